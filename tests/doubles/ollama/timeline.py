"""What the double's records say about concurrency and waiting at "Ollama".

Times are `time.monotonic()` of the test process (the double runs in it), recorded by
the server: `arrived_at` (request read), `started_at` (a GPU runner began generating),
`finished_at` (the answer's outcome was recorded, before its last write). A request
still being answered counts as running until `now`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from .recording import RecordedRequest

Interval = tuple[float, float]


def generating(requests: Iterable[RecordedRequest], now: float | None = None) -> list[Interval]:
    """(started, finished) of every request that started generating."""
    end = time.monotonic() if now is None else now
    return [
        (r.started_at, r.finished_at if r.finished_at is not None else end)
        for r in requests
        if r.started_at is not None
    ]


def in_flight(requests: Iterable[RecordedRequest], now: float | None = None) -> list[Interval]:
    """(arrived, finished) of every request: in flight at the double, queued or running."""
    end = time.monotonic() if now is None else now
    return [(r.arrived_at, r.finished_at if r.finished_at is not None else end) for r in requests]


def max_overlap(intervals: Sequence[Interval]) -> int:
    """The most intervals open at one instant (one ending when another starts: not both)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most


def busy_time(intervals: Sequence[Interval], start: float, end: float, *, at_least: int) -> float:
    """Seconds within [start, end] during which at least `at_least` intervals were open."""
    events = sorted(
        [(max(a, start), 1) for a, b in intervals if b > start and a < end]
        + [(min(b, end), -1) for a, b in intervals if b > start and a < end]
    )
    total, current, since = 0.0, 0, start
    for moment, change in events:
        if current >= at_least:
            total += moment - since
        current += change
        since = moment
    if current >= at_least:
        total += end - since
    return total


def waits(requests: Iterable[RecordedRequest]) -> list[float]:
    """Seconds each request waited at the double before it started generating."""
    return [r.started_at - r.arrived_at for r in requests if r.started_at is not None]
