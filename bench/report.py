"""Judging a run against the targets of issue 6, printing tables, writing JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MB_KIB = 1_000_000 / 1024  # targets say MB and KB: decimal units, the stricter reading
KB_KIB = 1_000 / 1024


@dataclass(frozen=True)
class Check:
    scenario: str
    metric: str
    target: str
    measured: float
    unit: str
    passed: bool | None  # None: reported, no target

    def as_row(self) -> list[str]:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[self.passed]
        value = "n/a" if math.isnan(self.measured) else f"{self.measured:,.2f} {self.unit}"
        return [self.scenario, self.metric, self.target, value.strip(), verdict]


def _get(data: Any, *path: str) -> float:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return math.nan
        data = data[part]
    return float(data) if isinstance(data, int | float) else math.nan


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda value: value <= limit


def _at_least(limit: float) -> Callable[[float], bool]:
    return lambda value: value >= limit


class _Checks:
    """Collects checks of one scenario."""

    def __init__(self, scenario: str, into: list[Check]) -> None:
        self.scenario = scenario
        self.into = into

    def add(
        self, metric: str, target: str, value: float, unit: str, ok: Callable[[float], bool]
    ) -> None:
        passed = (not math.isnan(value)) and ok(value)
        self.into.append(Check(self.scenario, metric, target, value, unit, passed))

    def info(self, metric: str, value: float, unit: str) -> None:
        self.into.append(Check(self.scenario, metric, "-", value, unit, None))


def _added(data: Any, *path: str) -> float:
    """The gateway's value at `path` minus the direct one."""
    return _get(data, "gateway", *path) - _get(data, "direct", *path)


def evaluate(results: dict[str, Any]) -> list[Check]:
    """Every target of the issue, measured."""
    checks: list[Check] = []
    sequential = _Checks("1 sequential", checks)
    for endpoint, per_target in results.get("sequential", {}).items():
        for stat, limit in (("p50", 1.0), ("p99", 3.0)):
            added = _added(per_target, "latency_ms", stat)
            sequential.add(
                f"{endpoint} added {stat}", f"<= {limit} ms", added, "ms", _at_most(limit)
            )
    for connections, per_target in results.get("throughput", {}).items():
        load = _Checks(f"2 {connections} conns", checks)
        rps, bare = _get(per_target, "gateway", "rps"), _get(per_target, "bare", "rps")
        errors = _get(per_target, "gateway", "errors")
        if connections == "32":
            load.add("gateway req/s", ">= 2,000", rps, "req/s", _at_least(2000))
            share = 100 * rps / bare if bare else math.nan
            load.add("gateway / bare proxy", ">= 50 %", share, "%", _at_least(50))
        else:
            load.info("gateway req/s", rps, "req/s")
            load.info("bare proxy req/s", bare, "req/s")
            load.info("gateway p99", _get(per_target, "gateway", "latency_ms", "p99"), "ms")
            load.info("gateway errors", errors, "")
            continue
        load.add("gateway errors", "0", errors, "", _at_most(0))
    streams = results.get("streams", {})
    if streams:
        stream = _Checks("3 streams", checks)
        ttfb = _added(streams, "ttfb_ms", "p99")
        stream.add("added TTFB p99", "<= 5 ms", ttfb, "ms", _at_most(5))
        transit = _added(streams, "transit_ms", "p99")
        stream.add("added inter-chunk delay p99", "<= 2 ms", transit, "ms", _at_most(2))
        stream.add(
            "streams not completed", "0", _get(streams, "gateway", "failed"), "", _at_most(0)
        )
        stream.info(
            "reads holding >1 chunk", 100 * _get(streams, "gateway", "merged_read_share"), "%"
        )
        surfaces = streams.get("surfaces", {})
        chat = _get(surfaces, "/v1/chat/completions", "server_cpu_us_per_chunk")
        messages = _get(surfaces, "/v1/messages", "server_cpu_us_per_chunk")
        if surfaces:
            stream.add(
                "CPU per chunk /v1/messages vs /v1/chat/completions",
                "<= +10 %",
                100 * (messages / chat - 1) if chat else math.nan,
                "%",
                _at_most(10),
            )
    memory = results.get("memory", {})
    mem = _Checks("4 memory", checks)
    if memory:
        mem.add("idle RSS", "<= 120 MB", _get(memory, "idle_kib") / MB_KIB, "MB", _at_most(120))
    if streams:
        per_stream = _get(streams, "per_stream_kib") / KB_KIB
        mem.add("per open stream", "<= 50 KB", per_stream, "KB", _at_most(50))
    after = list(memory.get("after", {}).values())
    if len(after) >= 2:
        first, last = after[0], after[-1]
        growth = 100 * (last["rss_kib"] / first["rss_kib"] - 1)
        label = f"RSS after {last['requests']:,} vs {first['requests']:,}"
        mem.add(label, "<= +10 %", growth, "%", _at_most(10))
    flood = results.get("auth_flood", {})
    if flood:
        without = _get(flood, "without_flood", "latency_ms", "p99")
        ratio = _get(flood, "with_flood", "latency_ms", "p99") / without if without else math.nan
        _Checks("5 auth flood", checks).add(
            "legit p99 with / without", "<= 2.0 x", ratio, "x", _at_most(2)
        )
    contended = results.get("queue", {})
    if contended:
        queue = _Checks("10 queue", checks)
        queue.add(
            "errors with the queue", "0", _get(contended, "queued", "errors"), "", _at_most(0)
        )
        queue.info("gateway CPU per grant", _get(contended, "cost_per_grant_us", "gateway"), "us")
        queue.info("Redis CPU per grant", _get(contended, "cost_per_grant_us", "redis"), "us")
    return checks


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in [header, ["-" * w for w in widths], *rows]]  # fmt: skip
    return "\n".join(lines)


def checks_table(checks: list[Check]) -> str:
    return table(
        ["scenario", "metric", "target", "measured", "result"], [c.as_row() for c in checks]
    )


def finite(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def write(results: dict[str, Any], out_dir: Path) -> Path:
    """`<timestamp>.json` and `latest.json` in `out_dir`; the timestamped path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = results | {"checks": [asdict(check) for check in evaluate(results)]}
    text = json.dumps(finite(results), indent=2, default=str, allow_nan=False) + "\n"
    path = out_dir / f"{stamp}.json"
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    return path
