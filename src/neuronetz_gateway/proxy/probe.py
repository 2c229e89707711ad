"""Bringing ejected servers back: `GET /api/version` once each back-off has passed.

`UpstreamProber` is a background task of each process. It sleeps while every server is
in rotation (an ejection wakes it), probes the servers whose back-off is over, and
readmits those that answer 200; the others wait twice as long (`UpstreamPool`).
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import structlog

from neuronetz_gateway.background import BackgroundTask
from neuronetz_gateway.proxy.upstreams import Upstream, UpstreamPool

log = structlog.get_logger(__name__)

PROBE_PATH = "/api/version"
# Never probe one server more often than this, whatever the clock says.
MIN_PROBE_INTERVAL_SECONDS = 0.1


async def answers(session: aiohttp.ClientSession, upstream: Upstream, timeout: float) -> bool:  # noqa: ASYNC109 - a per-request deadline, passed to aiohttp
    """Whether `upstream` answers `GET /api/version` with 200 within `timeout` seconds."""
    try:
        async with session.get(
            upstream.url(PROBE_PATH),
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            await response.read()
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


class UpstreamProber(BackgroundTask):
    """Probes ejected servers until they answer; `start()` / `aclose()`."""

    name = "upstream-prober"

    def __init__(
        self,
        pool: UpstreamPool,
        session: aiohttp.ClientSession,
        timeout_seconds: float,
    ) -> None:
        self._pool = pool
        self._session = session
        self._timeout = timeout_seconds

    async def probe_due(self) -> None:
        """Probe every server whose back-off has passed, concurrently."""
        due = self._pool.due_for_probe()
        results = await asyncio.gather(*(answers(self._session, u, self._timeout) for u in due))
        for upstream, ok in zip(due, results, strict=True):
            if ok:
                self._pool.readmit(upstream)
            else:
                self._pool.probe_failed(upstream)

    async def run(self) -> None:
        ejected = self._pool.ejected
        while True:
            # Cleared before planning: an ejection from here on wakes the wait below.
            ejected.clear()
            try:
                await self.probe_due()
            except Exception as error:  # noqa: BLE001 - the loop must outlive any failure
                log.warning("upstream_probe_cycle_failed", error=type(error).__name__)
            delay = self._pool.next_probe_in()
            if delay is not None:
                delay = max(delay, MIN_PROBE_INTERVAL_SECONDS)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await ejected.wait()
