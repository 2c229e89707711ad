"""Scenario 1: sequential non-streaming requests on one keep-alive connection.

Besides latency, the serving process's CPU time per request is recorded (from
/proc/<pid>/stat): unlike latency it hardly depends on what else runs on the machine.

Targets are measured in interleaved rounds (direct, bare, gateway, direct, ...) so
that drift of the machine (another process waking up) hits all of them alike. The
added latency is the gateway's percentile minus the upstream's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bench.processes import cpu_seconds
from bench.rawhttp import BlockingConnection
from bench.requests import ENDPOINTS, Target
from bench.stats import summary

ROUNDS = 4


def _measure(connection: BlockingConnection, request: bytes, count: int) -> tuple[list[float], int]:
    """Latencies in ms of `count` requests, and how many were not 200."""
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter_ns
    for _ in range(count):
        started = clock()
        status, _ = connection.exchange(request)
        latencies.append((clock() - started) / 1e6)
        if status != 200:
            errors += 1
    return latencies, errors


def run(targets: Sequence[Target], *, count: int, warmup: int) -> dict[str, Any]:
    """Per endpoint and target: latency summary (ms) and errors."""
    results: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        connections = {target.name: BlockingConnection(target.port) for target in targets}
        requests = {target.name: target.request(endpoint) for target in targets}
        latencies: dict[str, list[float]] = {target.name: [] for target in targets}
        errors = dict.fromkeys(latencies, 0)
        cpu = dict.fromkeys(latencies, 0.0)
        try:
            for target in targets:
                _measure(connections[target.name], requests[target.name], warmup)
            per_round = max(1, count // ROUNDS)
            for _ in range(ROUNDS):
                for target in targets:
                    before = cpu_seconds(target.pid) if target.pid else 0.0
                    values, failed = _measure(
                        connections[target.name], requests[target.name], per_round
                    )
                    if target.pid:
                        cpu[target.name] += cpu_seconds(target.pid) - before
                    latencies[target.name] += values
                    errors[target.name] += failed
        finally:
            for connection in connections.values():
                connection.close()
        results[endpoint.name] = {
            name: {
                "latency_ms": summary(values),
                "errors": errors[name],
                # Idle keep-alive connections the server had closed (bench/rawhttp.py).
                "reconnects": connections[name].reconnects,
                "cpu_us_per_request": round(1e6 * cpu[name] / len(values)) if cpu[name] else None,
            }
            for name, values in latencies.items()
        }
    return results


def added(results: dict[str, Any], endpoint: str, target: str, stat: str) -> float:
    """`target`'s latency percentile `stat` minus the direct one, in ms."""
    per_target = results[endpoint]
    return float(per_target[target]["latency_ms"][stat] - per_target["direct"]["latency_ms"][stat])
