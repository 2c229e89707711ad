"""Scenario 2: closed-loop load with wrk at fixed connection counts.

Each run is preceded by a short warm-up run (discarded) so that connection set-up,
the key cache and the upstream pool are warm in every measured run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench import wrk
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
            result = wrk.run(target, NATIVE_CHAT, connections=connections, seconds=seconds)
            per_target[target.name] = result.as_dict()
        results[str(connections)] = per_target
    return results
