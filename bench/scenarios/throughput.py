"""Scenario 2: closed-loop load with wrk at fixed connection counts.

Each run is preceded by a short warm-up run (discarded) so that connection set-up,
the key cache and the upstream pool are warm in every measured run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench import wrk
from bench.processes import cpu_seconds
from bench.requests import NATIVE_CHAT, Target


def run(
    targets: Sequence[Target],
    *,
    connection_counts: Sequence[int],
    seconds: float,
    warmup_seconds: float,
) -> dict[str, Any]:
    """{connections: {target: wrk result}} for non-streaming /api/chat."""
    results: dict[str, Any] = {}
    for connections in connection_counts:
        per_target: dict[str, Any] = {}
        for target in targets:
            if warmup_seconds > 0:
                wrk.run(target, NATIVE_CHAT, connections=connections, seconds=warmup_seconds)
            before = cpu_seconds(target.pid) if target.pid else 0.0
            result = wrk.run(target, NATIVE_CHAT, connections=connections, seconds=seconds)
            per_target[target.name] = result.as_dict()
            if target.pid and result.requests:
                used = cpu_seconds(target.pid) - before
                per_target[target.name]["cpu_us_per_request"] = round(1e6 * used / result.requests)
                per_target[target.name]["cpu_share"] = round(used / result.seconds, 3)
        results[str(connections)] = per_target
    return results
