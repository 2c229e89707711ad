"""Metrics read from the process's state rather than counted per request.

The audit buffer's depth and the key cache's hits and misses live as plain numbers on
the `AuditWriter` and the `Authenticator`, where keeping them costs the hot path
nothing. `MetricsSampler` copies them into Prometheus every second and before a scrape
answered by this process (the buffer's capacity, a setting, once at start). A push is
needed (a scrape-time callback is not enough): with several workers the scrape is
answered by one of them, which can only read the others' values from what they last
wrote.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from prometheus_client import Counter

from neuronetz_gateway.background import BackgroundTask
from neuronetz_gateway.observability import metrics

SAMPLE_INTERVAL_SECONDS = 1.0


class AuditState(Protocol):
    @property
    def capacity(self) -> int: ...
    @property
    def depth(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def rejected(self) -> int: ...


class CacheState(Protocol):
    hits: int
    misses: int


class _Delta:
    """Adds to a counter what a monotonically growing number gained since last time."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._seen = 0

    def update(self, current: int) -> None:
        if current > self._seen:
            self._counter.inc(current - self._seen)
            self._seen = current


class MetricsSampler(BackgroundTask):
    name = "metrics-sampler"

    def __init__(
        self,
        audit: AuditState,
        cache: CacheState,
        *,
        interval_seconds: float = SAMPLE_INTERVAL_SECONDS,
    ) -> None:
        self._audit = audit
        self._cache = cache
        self._interval = interval_seconds
        self._hits = _Delta(metrics.AUTH_CACHE_LOOKUPS.labels("hit"))
        self._misses = _Delta(metrics.AUTH_CACHE_LOOKUPS.labels("miss"))
        self._dropped = _Delta(metrics.AUDIT_RECORDS_DROPPED)
        self._rejected = _Delta(metrics.AUDIT_RECORDS_REJECTED)

    def sample(self) -> None:
        """Copy the current values into the metrics (cheap: a few integer reads)."""
        metrics.AUDIT_BUFFER_ROWS.set(self._audit.depth)
        self._hits.update(self._cache.hits)
        self._misses.update(self._cache.misses)
        self._dropped.update(self._audit.dropped)
        self._rejected.update(self._audit.rejected)

    async def start(self) -> None:
        metrics.AUDIT_BUFFER_CAPACITY_ROWS.set(self._audit.capacity)
        self.sample()
        self.start_task()

    async def aclose(self) -> None:
        await self.stop_task()
        self.sample()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.sample()
