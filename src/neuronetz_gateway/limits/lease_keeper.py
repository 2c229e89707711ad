"""`LeaseKeeper`: keeps the concurrency leases of this process's requests alive.

A lease expires `lease_seconds` after its last refresh (docs/LIMITS.md), so a response
that runs longer must be refreshed every `Ticket.refresh_interval` (a third of the
lease). One timer serves every request of the process: it runs at most once a
second while some lease is kept, and refreshes each lease due within the next second
(a refresh that comes early only extends the lease). Keeping a lease is a dict
insert, letting it go a dict delete: a request shorter than the interval (most of
them) arms no timer and sends nothing. A timer per request would cost more than
the rest of the limiter's client side (uvloop allocates and frees one per timer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from neuronetz_gateway.limits.types import Limiter, LimiterUnavailable, Ticket

# How often the timer runs at most, and so how early a lease may be refreshed.
GRANULARITY_SECONDS = 1.0


class LeaseKeeper:
    """Refreshes every kept ticket's lease every `refresh_interval` s until dropped."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self._kept: dict[int, tuple[Ticket, float]] = {}  # id(ticket): (ticket, due)
        self._timer: asyncio.TimerHandle | None = None
        self._refreshing: set[asyncio.Task[None]] = set()

    def keep(self, ticket: Ticket) -> None:
        """Refresh `ticket`'s lease from `refresh_interval` s on, until `drop`."""
        loop = asyncio.get_running_loop()
        due = loop.time() + ticket.refresh_interval
        self._kept[id(ticket)] = (ticket, due)
        if self._timer is None:
            self._timer = loop.call_at(due, self._due)

    def drop(self, ticket: Ticket) -> None:
        """No more refreshes for `ticket` (one in flight completes); idempotent."""
        self._kept.pop(id(ticket), None)

    def _due(self) -> None:
        self._timer = None
        if not self._kept:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        horizon = now + GRANULARITY_SECONDS
        for key, (ticket, due) in list(self._kept.items()):
            if due <= horizon:
                self._kept[key] = (ticket, now + ticket.refresh_interval)
                self._spawn(loop, self._refresh(ticket))
        self._timer = loop.call_at(horizon, self._due)

    async def _refresh(self, ticket: Ticket) -> None:
        # Redis down: the lease then expires by itself, as every lease does.
        with contextlib.suppress(LimiterUnavailable):
            await self._limiter.refresh(ticket)

    def _spawn(self, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> None:
        task = loop.create_task(work)
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    def close(self) -> None:
        """Stop the timer and the refreshes in flight (the process is stopping)."""
        self._kept.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._refreshing:
            task.cancel()
