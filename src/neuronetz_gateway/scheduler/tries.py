"""A request's try for a free slot, sent beside its admission without waiting
(docs/SCHEDULING.md): `Tries.prefetch` queues the acquire script so that it shares the
admission's write, `tried` reads once what it got, and `discard` gives back a grant it
got that the request did not use. `SlotRequest` is one request's claim on a slot: its
ticket and its try."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from neuronetz_gateway import ids
from neuronetz_gateway.errors import unavailable
from neuronetz_gateway.scheduler.grants import Grant, Prefetch, WaitTicket
from neuronetz_gateway.scheduler.holdings import Holdings
from neuronetz_gateway.scheduler.layout import ServerSlots
from neuronetz_gateway.scheduler.placement import Placement
from neuronetz_gateway.scheduler.store import QueueUnavailable, unwrap
from neuronetz_gateway.scripting import Reply

if TYPE_CHECKING:  # slots.py imports this module: only the type is needed here
    from neuronetz_gateway.scheduler.slots import SlotScheduler

log = structlog.get_logger(__name__)

# Queues a try's acquire script (ticket, waiter, servers) and returns its reply.
SendTry = Callable[[WaitTicket, str, list[ServerSlots]], asyncio.Future[Reply]]
# An acquire reply made into a grant for the waiter, if it granted one.
ReadGrant = Callable[[Reply, str], Grant | None]


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """One request's claim on a slot: its scheduler, who waits and until when, and the
    try started beside its admission (`SlotScheduler.request`)."""

    scheduler: SlotScheduler
    ticket: WaitTicket
    prefetched: Prefetch | None

    def close(self) -> None:
        """The request has ended: a grant its try got that it did not use goes back."""
        if self.prefetched is not None:
            self.scheduler.discard(self.prefetched)


class Tries:
    """The tries of this process's requests; see the module docstring."""

    def __init__(
        self, holdings: Holdings, placement: Placement, send: SendTry, granted: ReadGrant
    ) -> None:
        """`send` queues a try's script; `granted` reads its reply (wake-ups, grant)."""
        self._holdings = holdings
        self._placement = placement
        self._send = send
        self._granted = granted

    def prefetch(self, holders: Collection[str], ticket: WaitTicket) -> Prefetch | None:
        """Try for a free slot now, without waiting: the script is queued before this
        returns, so it goes out in the same write as the admission script that follows
        (one round trip for both), with no task of its own. Hand the result to
        `acquire` (or `discard` it); None: nothing to try (no server with a queue
        among the holders)."""
        taken = self._holdings.take_over(holders)
        if taken is not None:  # an ended grant's slot: no script (releases.py)
            return Prefetch(None, taken.id, read=True, grant=taken)
        servers = self._placement.limited(holders, ())
        if not servers:
            return None
        waiter = ids.random_hex()
        return Prefetch(self._send(ticket, waiter, servers), waiter)

    def discard(self, prefetched: Prefetch) -> None:
        """The request will not use what `prefetch` got (refused, failed, done): give a
        granted slot back. A grant already released is not released twice."""
        reply = prefetched.reply
        if reply is None or reply.done():
            self._discard_read(prefetched)
        else:
            reply.add_done_callback(lambda _: self._discard_read(prefetched))

    async def tried(self, prefetched: Prefetch) -> Grant | None:
        """What `prefetch` got: a grant, or None when no slot was free. Raises
        `unavailable` when the store could not be reached."""
        reply = prefetched.reply
        if reply is not None and not reply.done():  # a client leaving must not cancel it
            await asyncio.wait((reply,))
        try:
            return self._read(prefetched)
        except QueueUnavailable:
            raise unavailable("the queue for upstream slots is unavailable") from None

    def _discard_read(self, prefetched: Prefetch) -> None:
        if prefetched.reply is not None and prefetched.reply.cancelled():
            return
        try:
            grant = self._read(prefetched)
        except QueueUnavailable:
            return
        if grant is not None:
            self._holdings.release(grant)

    def _read(self, prefetched: Prefetch) -> Grant | None:
        """What the try got (its reply is in); the first call reads it."""
        if not prefetched.read and prefetched.reply is not None:
            prefetched.read = True
            try:
                reply = unwrap(prefetched.reply)
            except QueueUnavailable as error:
                log.error("queue_unavailable", script="acquire", error=str(error))
                raise
            prefetched.grant = self._granted(reply, prefetched.waiter)
        return prefetched.grant
