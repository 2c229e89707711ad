"""What the scheduler hands out and is asked with (docs/SCHEDULING.md)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from neuronetz_gateway.proxy.upstreams import Upstream
from neuronetz_gateway.scheduler.layout import ServerSlots
from neuronetz_gateway.scripting import Reply


@dataclass(frozen=True, slots=True)
class WaitTicket:
    """Who asks for a slot, since when and until when (the event loop's clock) it may
    wait: the wait limit and `audit_log.queue_ms` both count from `since`."""

    tenant: str
    weight: int
    deadline: float
    since: float


@dataclass(frozen=True, slots=True)
class Grant:
    """A server to forward to; `server` is None for a server without a queue. `since`:
    when its slot last passed through the queue (the event loop's clock)."""

    upstream: Upstream
    id: str
    server: ServerSlots | None
    since: float = 0.0


@dataclass(slots=True, eq=False)
class Prefetch:
    """A try for a free slot, sent beside the admission (`SlotScheduler.prefetch`):
    its script's reply, and what that came to once read (it is read once)."""

    reply: asyncio.Future[Reply] | None  # None: taken over, no script (releases.py)
    waiter: str
    read: bool = False
    grant: Grant | None = None


class WaiterGone(Exception):
    """The queue lost this waiter (its replica was taken for dead): it was never granted."""
