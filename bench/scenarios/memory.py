"""Scenario 4: the gateway's resident memory idle and after many requests (leak check).

RSS is `VmRSS` from /proc/<pid>/status, read after a short pause so that the audit
writer has flushed what the last requests queued.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bench import wrk
from bench.processes import rss_kib
from bench.requests import NATIVE_CHAT, Target

CONNECTIONS = 32
MAX_SLICE_SECONDS = 10.0


def settled_rss(pid: int, settle_seconds: float) -> int:
    """RSS after a pause in which the audit writer flushes what requests queued."""
    time.sleep(settle_seconds)
    return rss_kib(pid)


def run(
    pid: int, target: Target, checkpoints: Sequence[int], settle_seconds: float
) -> dict[str, Any]:
    """RSS (KiB) idle, then after each cumulative request count in `checkpoints`."""
    readings: dict[str, Any] = {"idle_kib": settled_rss(pid, settle_seconds), "after": {}}
    done = errors = 0
    rate = 0.0
    for checkpoint in checkpoints:
        while done < checkpoint:
            # Size each slice from the rate seen so far, so the count lands near the
            # checkpoint (wrk cannot stop at a count).
            seconds = min(MAX_SLICE_SECONDS, (checkpoint - done) / rate) if rate else 1.0
            result = wrk.run(
                target, NATIVE_CHAT, connections=CONNECTIONS, seconds=max(1.0, seconds)
            )
            done += result.requests
            errors += result.errors
            rate = result.rps or rate
        readings["after"][str(checkpoint)] = {
            "requests": done,
            "errors": errors,
            "rss_kib": settled_rss(pid, settle_seconds),
        }
    return readings
