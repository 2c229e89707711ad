"""Scenario 6: one worker against `GATEWAY_WORKERS=auto` (one per CPU) on this machine.

The same closed-loop wrk load (non-streaming /api/chat) on two gateways, interleaved
round by round so that both meet the same machine: requests per second and the
server's CPU per request (all of its processes: the supervisor and every worker).
"""

from __future__ import annotations

from typing import Any

from bench.requests import Target
from bench.scenarios import throughput


def run(
    single: Target,
    auto: Target,
    *,
    auto_workers: int,
    connections: int,
    seconds: float,
    warmup_seconds: float,
    rounds: int,
) -> dict[str, Any]:
    """{"1": totals, "auto": totals, "auto_workers": N} over `rounds` interleaved rounds."""
    runs: dict[str, list[dict[str, Any]]] = {"1": [], "auto": []}
    for _ in range(rounds):
        measured = throughput.run(
            [single, auto],
            connection_counts=(connections,),
            seconds=seconds,
            warmup_seconds=warmup_seconds,
        )[str(connections)]
        runs["1"].append(measured[single.name])
        runs["auto"].append(measured[auto.name])
    return {name: _totals(results) for name, results in runs.items()} | {
        "auto_workers": auto_workers,
        "connections": connections,
        "rounds": rounds,
    }


def _totals(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates over all rounds; latency percentiles of the worst round."""
    requests = sum(r["requests"] for r in results)
    seconds = sum(r["seconds"] for r in results)
    cpu = [r["cpu_us_per_request"] * r["requests"] for r in results if "cpu_us_per_request" in r]
    return {
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p99_ms": max(r["latency_ms"]["p99"] for r in results),
        "cpu_us_per_request": round(sum(cpu) / requests) if requests and cpu else None,
        "errors": sum(r["errors"] for r in results),
    }
