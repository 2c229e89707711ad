"""Scenario 3 as the run drives it: streams through direct, bare and a fresh gateway,
then over each SSE surface, with the gateway's RSS and a py-spy sample of the ramp."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import profiling
from bench.config import BenchConfig
from bench.processes import Service, cpu_seconds
from bench.requests import NATIVE_CHAT, STREAMED_SURFACES, Endpoint, Target
from bench.scenarios import memory, streams

if TYPE_CHECKING:
    from bench.runner import Run


def run(bench: Run, stub: Service, bare: Service) -> dict[str, Any]:
    """Scenario 3 against a fresh gateway process, so that its RSS before the streams
    is not the high-water mark of the throughput runs (Python keeps freed arenas)."""
    gateway = bench.gateway(stub.base_url, name="gateway-streams")
    try:
        return _stream_runs(bench, stub, bare, gateway)
    finally:
        gateway.stop()


def _timeout(config: BenchConfig) -> float:
    return 30 + config.stream_chunks * config.stream_interval_ms / 1000


def _stream_runs(bench: Run, stub: Service, bare: Service, gateway: Service) -> dict[str, Any]:
    config = bench.config
    targets = {
        "direct": Target("direct", stub.port, pid=stub.pid),
        "bare": Target("bare", bare.port, pid=bare.pid),
        "gateway": bench.gateway_target(gateway),
    }
    out: dict[str, Any] = {}
    rss_before = 0
    for name, target in targets.items():
        # Warm-up: the first streams of a key pay for cold budget counters and new
        # upstream connections, which is not what this scenario measures.
        if config.stream_warmup:
            streams.run(
                target.port,
                target.request(NATIVE_CHAT, stream=True),
                streams=config.stream_warmup,
                processes=1,
                ramp_seconds=0.0,
                timeout_seconds=_timeout(config),
            )
        sampler = None
        if name == "gateway":
            rss_before = memory.settled_rss(gateway.pid, config.settle_seconds)
            sampler = _sample_streams(config, gateway)
        cpu_before = cpu_seconds(target.pid) if target.pid else 0.0
        sample_rss_of = gateway.pid if name == "gateway" else None
        out[name] = _measured_streams(config, target, NATIVE_CHAT, sample_rss_of)
        if target.pid and out[name]["chunks"]:
            used = cpu_seconds(target.pid) - cpu_before
            # Start-ups included: the CPU the serving process spent per chunk relayed.
            out[name]["server_cpu_us_per_chunk"] = round(1e6 * used / out[name]["chunks"], 1)
        if sampler is not None:
            out["profile"] = _stream_profile(config, sampler)
    peak = out["gateway"]["peak_rss_kib"]
    out["rss_before_kib"] = rss_before
    out["per_stream_kib"] = (peak - rss_before) / config.streams
    out["surfaces"] = _surface_streams(config, bench.gateway_target(gateway), gateway)
    return out


def _measured_streams(
    config: BenchConfig, target: Target, endpoint: Endpoint, sample_rss_of: int | None = None
) -> dict[str, Any]:
    """The scenario's streams (count, processes, ramp) to `target` on `endpoint`."""
    return streams.run(
        target.port,
        target.request(endpoint, stream=True),
        streams=config.streams,
        processes=config.stream_processes,
        ramp_seconds=config.stream_ramp_seconds,
        timeout_seconds=_timeout(config),
        sample_rss_of=sample_rss_of,
    )


def _surface_streams(config: BenchConfig, target: Target, gateway: Service) -> dict[str, Any]:
    """The same streams through the gateway over each SSE surface: what relaying one
    chunk costs the gateway on /v1/chat/completions and on /v1/messages."""
    out: dict[str, Any] = {}
    for endpoint in STREAMED_SURFACES:
        cpu_before = cpu_seconds(gateway.pid)
        result = _measured_streams(config, target, endpoint)
        if result["chunks"]:
            used = cpu_seconds(gateway.pid) - cpu_before
            result["server_cpu_us_per_chunk"] = round(1e6 * used / result["chunks"], 1)
        out[endpoint.name] = result
    return out


def _sample_streams(config: BenchConfig, gateway: Service) -> subprocess.Popen[bytes] | None:
    """py-spy on the gateway for the ramp and the streams' first seconds: where the
    time of stream starts and chunk relays goes (scenario 3's gaps)."""
    if config.quick:
        return None
    seconds = config.stream_ramp_seconds + 2.0
    return profiling.record(gateway.pid, seconds, _stream_profile_path(config))


def _stream_profile_path(config: BenchConfig) -> Path:
    config.out_dir.mkdir(parents=True, exist_ok=True)
    return config.out_dir / "profile-streams-raw.txt"


def _stream_profile(config: BenchConfig, sampler: subprocess.Popen[bytes]) -> dict[str, Any]:
    sampler.wait(timeout=60)
    output = _stream_profile_path(config)
    if not output.exists():
        return {"samples": 0}
    collapsed = output.read_text()
    output.write_text(profiling.merge_lines(collapsed))
    return profiling.analyse(collapsed) | {"collapsed": output.name}
