"""The Ollama servers a process forwards to: which one a request goes to, and which are
in rotation (docs/REFERENCE.md §4.7; docs/UPSTREAMS.md).

A request goes to a server that has its model (as discovery saw it), least in-flight
first, idle ties taken in turn. A server that refuses connections or times out is
ejected: it gets no requests until a probe (`proxy.probe.UpstreamProber`) finds it
answering again. Probes are due after a back-off that doubles with every failed probe
(1 s, 2 s, 4 s, ... up to 10 s by default).

The pool only keeps state; it does no I/O. Time comes from an injectable clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

import structlog
from prometheus_client import Gauge
from yarl import URL

from neuronetz_gateway.observability.metrics import (
    UPSTREAM_ERRORS,
    UPSTREAM_IN_FLIGHT,
    UPSTREAM_UP,
)

log = structlog.get_logger(__name__)

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 10.0

# Failure kinds (the `kind` label of neuronetz_upstream_errors_total). The first two
# say the server itself is gone or stuck, and eject it.
CONNECT = "connect"  # refused, unreachable, or no connection within the connect timeout
TIMEOUT = "timeout"  # connected, but silent for longer than the read timeout
STATUS = "status"  # answered with a server error (5xx, redirect, refusal of the gateway)
STREAM = "stream"  # the connection broke, or the answer carried an error, mid-answer
EJECTING = frozenset({CONNECT, TIMEOUT})


def host_port(base_url: str) -> str:
    """`host:port` of a server: its metric label and its name in logs (no scheme,
    credentials or path)."""
    try:
        url = URL(base_url)
    except ValueError:
        return "invalid"
    host = url.raw_host or "invalid"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{url.port}"


@dataclass(eq=False)
class Upstream:
    """One Ollama server, as this process sees it."""

    base_url: str
    index: int
    label: str
    in_flight: int = 0
    # None while in rotation; else the clock time at which the next probe is due.
    ejected_until: float | None = None
    # Failed probes since the ejection: the back-off doubles with each.
    failed_probes: int = 0
    # This server's in-flight gauge, resolved once: `.labels()` costs a few µs per call.
    in_flight_gauge: Gauge = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.in_flight_gauge = UPSTREAM_IN_FLIGHT.labels(self.label)

    @property
    def in_rotation(self) -> bool:
        return self.ejected_until is None

    def url(self, path: str) -> str:
        return self.base_url + path


class UpstreamPool:
    """Every configured server, in `OLLAMA_BASE_URLS` order, with its health."""

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        backoff_max: float = BACKOFF_MAX_SECONDS,
    ) -> None:
        if not base_urls:
            raise ValueError("at least one upstream is required")
        self.upstreams = [
            Upstream(url, index, host_port(url))
            for index, url in enumerate(dict.fromkeys(base_urls))  # a server listed twice is one
        ]
        self._clock = clock
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._turn = 0
        # Set on every ejection, so a sleeping prober re-plans its next probe.
        self.ejected = asyncio.Event()
        for upstream in self.upstreams:
            UPSTREAM_UP.labels(upstream.label).set(1)

    # -- choosing -----------------------------------------------------------------------

    def holders(self, having: Collection[str]) -> list[Upstream]:
        """The configured servers among `having` (base URLs of servers that have a model).

        Empty `having` (a model registered for any server), or one naming only servers
        that are no longer configured, means every server may serve it.
        """
        held = [u for u in self.upstreams if u.base_url in having] if having else []
        return held or list(self.upstreams)

    def pick(
        self, having: Collection[str] = (), exclude: Iterable[Upstream] = ()
    ) -> Upstream | None:
        """The server in rotation among `having`'s holders with the fewest requests in
        flight (ties in turn), not in `exclude`; None when there is none."""
        excluded = set(map(id, exclude))
        candidates = [u for u in self.holders(having) if u.in_rotation and id(u) not in excluded]
        if not candidates:
            return None
        least = min(u.in_flight for u in candidates)
        tied = [u for u in candidates if u.in_flight == least]
        self._turn += 1
        return tied[self._turn % len(tied)]

    def in_rotation(self) -> list[Upstream]:
        return [u for u in self.upstreams if u.in_rotation]

    def retry_after(self, having: Collection[str] = ()) -> int:
        """Whole seconds (≥ 1) until the next probe of one of `having`'s holders."""
        due = [u.ejected_until for u in self.holders(having) if u.ejected_until is not None]
        if not due:
            return 1
        return max(1, math.ceil(min(due) - self._clock()))

    # -- requests -----------------------------------------------------------------------

    def begin(self, upstream: Upstream) -> None:
        upstream.in_flight += 1
        upstream.in_flight_gauge.inc()

    def end(self, upstream: Upstream) -> None:
        upstream.in_flight -= 1
        upstream.in_flight_gauge.dec()

    def failed(self, upstream: Upstream, kind: str) -> None:
        """Record a failed exchange; a connect failure or a timeout ejects the server."""
        UPSTREAM_ERRORS.labels(upstream.label, kind).inc()
        if kind in EJECTING:
            self.eject(upstream, kind)

    # -- health -------------------------------------------------------------------------

    def eject(self, upstream: Upstream, reason: str) -> None:
        """Take `upstream` out of rotation until a probe finds it answering."""
        if not upstream.in_rotation:
            return  # concurrent failures of one outage do not stretch the back-off
        upstream.failed_probes = 0
        upstream.ejected_until = self._clock() + self._backoff(0)
        UPSTREAM_UP.labels(upstream.label).set(0)
        log.warning(
            "upstream_ejected",
            upstream=upstream.label,
            reason=reason,
            probe_in_seconds=self._backoff(0),
        )
        self.ejected.set()

    def due_for_probe(self) -> list[Upstream]:
        """Ejected servers whose back-off has passed."""
        now = self._clock()
        return [u for u in self.upstreams if u.ejected_until is not None and u.ejected_until <= now]

    def next_probe_in(self) -> float | None:
        """Seconds until the next probe is due (0 if one is); None when all are in rotation."""
        due = [u.ejected_until for u in self.upstreams if u.ejected_until is not None]
        if not due:
            return None
        return max(0.0, min(due) - self._clock())

    def probe_failed(self, upstream: Upstream) -> None:
        """The probe found no answer: wait twice as long before the next one."""
        if upstream.in_rotation:
            return
        upstream.failed_probes += 1
        delay = self._backoff(upstream.failed_probes)
        upstream.ejected_until = self._clock() + delay
        log.info(
            "upstream_probe_failed",
            upstream=upstream.label,
            failed_probes=upstream.failed_probes,
            probe_in_seconds=delay,
        )

    def readmit(self, upstream: Upstream) -> None:
        """The probe got an answer: the server is back in rotation."""
        if upstream.in_rotation:
            return
        upstream.ejected_until = None
        upstream.failed_probes = 0
        UPSTREAM_UP.labels(upstream.label).set(1)
        log.info("upstream_readmitted", upstream=upstream.label)

    def _backoff(self, failed_probes: int) -> float:
        return min(self._backoff_max, self._backoff_base * 2.0 ** min(failed_probes, 32))
