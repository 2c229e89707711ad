"""`SlotScheduler`: this process's side of the gateway's queue (docs/SCHEDULING.md).

A request that takes a slot calls `acquire` for a server among its model's holders; it
gets a `Grant` at once when a slot is free, or waits in the queue (across replicas, in
weighted fair order) until a script grants it one, until `QUEUE_MAX_WAIT_SECONDS` (503
`server_busy`), or until its client leaves (cancellation: it leaves the queue at once).
Before that, `request` starts a try for a free slot beside the admission
(scheduler/tries.py), which `acquire` uses when it got one. `release` gives the slot
back when the response ended, without delaying anybody: the next request of this
process takes it over while nobody waits for it, or it rides on this process's next
acquire script, or goes alone soon after (scheduler/releases.py).

Every decision of the queue is one script on the `ScriptStore`; this class keeps only
what is local: the futures of this process's waiters (woken by a script's reply, by a
wake-up message of another replica, or by the tick's report), and its `Holdings` (the
grants it holds, their leases refreshed by `tick`). A server with `OLLAMA_SLOTS=0` has
no queue: a request its holders include goes there (or to another unlimited holder)
without any script.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Coroutine, Sequence
from typing import Any

import structlog

from neuronetz_gateway import ids
from neuronetz_gateway.errors import unavailable
from neuronetz_gateway.observability.metrics import (
    QUEUE_WAIT_SECONDS,
    QUEUED_REQUESTS,
)
from neuronetz_gateway.proxy.upstreams import Upstream, UpstreamPool
from neuronetz_gateway.scheduler.errors import server_busy
from neuronetz_gateway.scheduler.grants import Grant, Prefetch, WaiterGone, WaitTicket
from neuronetz_gateway.scheduler.holdings import Holdings
from neuronetz_gateway.scheduler.layout import Layout, ServerSlots, server_id
from neuronetz_gateway.scheduler.placement import Placement
from neuronetz_gateway.scheduler.releases import TAKEOVER_MAX_SECONDS
from neuronetz_gateway.scheduler.replies import acquired_reply, dropped_reply, pairs, texts
from neuronetz_gateway.scheduler.store import QueueUnavailable, ScriptName, ScriptStore
from neuronetz_gateway.scheduler.tries import SlotRequest, Tries
from neuronetz_gateway.scripting import Reply

log = structlog.get_logger(__name__)

TICK_SECONDS = 1.0
# A tick aimed at a lease's expiry runs this much after it (clocks of Redis and replicas).
EXPIRY_MARGIN_SECONDS = 0.01


class SlotScheduler:
    """Slots and the queue for this process's requests; see the module docstring."""

    def __init__(
        self,
        store: ScriptStore,
        pool: UpstreamPool,
        slots: Sequence[int],
        *,
        lease_seconds: float,
        replica: str | None = None,
        wake_channels: bool = True,
        takeover_seconds: float = TAKEOVER_MAX_SECONDS,
    ) -> None:
        """`slots[i]` belongs to `pool.upstreams[i]`; `wake_channels` False: no
        pub/sub (standalone: every waiter is this process's, woken from replies), and
        no ended grant taken over (there is no busy channel to stop it)."""
        self._store = store
        self._pool = pool
        limited = [
            ServerSlots(u, slots[u.index], server_id(u.base_url), f"ollama_{u.index}")
            for u in pool.upstreams
            if slots[u.index] > 0
        ]
        self.layout = Layout.build(limited)
        self._placement = Placement(pool, limited)
        self._lease_ms = int(lease_seconds * 1000)
        self.refresh_interval = lease_seconds / 3
        self.replica = replica or ids.random_hex()
        self._channel = self.layout.wake_channel() if wake_channels else ""
        # What every script run passes after its clock (docs/SCHEDULING.md).
        self._head = (
            str(self._lease_ms), self.replica, self._channel, *self.layout.server_args
        )  # fmt: skip
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.holdings = Holdings(
            self.layout,
            lambda grants: self._spawn(self._drop("grant", *grants)),
            takeover_seconds=takeover_seconds if wake_channels else -1.0,
            all_limited=len(limited) == len(pool.upstreams),
        )
        self._tries = Tries(self.holdings, self._placement, self._send_try, self._granted)
        self.activity = self.holdings.activity
        self._last_refresh = time.monotonic()
        # The earliest lease expiry the last replies named (wall clock, s), if any.
        self.next_expiry: float | None = None

    @property
    def channel(self) -> str:
        """This replica's wake-up channel ('' without pub/sub)."""
        return self._channel + self.replica if self._channel else ""

    @property
    def busy_channel(self) -> str:
        """Where queuing scripts name the servers somebody waits for ('' without)."""
        return self._channel + "busy" if self._channel else ""

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def holding(self) -> int:
        return self.holdings.count

    # -- a request's slot ---------------------------------------------------------------

    def request(self, holders: Collection[str], ticket: WaitTicket) -> SlotRequest:
        """A request's claim on a slot: `prefetch` starts now (before the admission is
        sent: both scripts share one write). The caller hands it to `acquire`, and in
        any case to `SlotRequest.close` when the request ends (a grant it did not use
        goes back: refused, failed)."""
        return SlotRequest(self, ticket, self.prefetch(holders, ticket))

    def prefetch(self, holders: Collection[str], ticket: WaitTicket) -> Prefetch | None:
        """Try for a free slot now, without waiting (`Tries.prefetch`)."""
        return self._tries.prefetch(holders, ticket)

    def discard(self, prefetched: Prefetch) -> None:
        """Give back a grant `prefetch` got that the request will not use (`Tries.discard`)."""
        self._tries.discard(prefetched)

    async def tried(self, prefetched: Prefetch) -> Grant | None:
        """What `prefetch` got: a grant, or None (`Tries.tried`)."""
        return await self._tries.tried(prefetched)

    async def acquire(
        self,
        holders: Collection[str],
        exclude: Collection[Upstream],
        ticket: WaitTicket,
        prefetched: Prefetch | None = None,
    ) -> Grant | None:
        """A slot on a server in rotation among `holders` (base URLs; empty: any) not in
        `exclude`, waiting for it if none is free; None when no such server exists.
        `prefetched`: what `prefetch` got for this request, used when it is a grant.

        Raises `server_busy()` when the deadline passes, `unavailable` when the store
        cannot be reached; a cancellation (the client left) takes the waiter out of the
        queue before it goes on."""
        started = time.perf_counter()
        if prefetched is not None:
            grant = await self.tried(prefetched)
            prefetched.grant = None  # this call answers for it from now on, not discard
            if grant is not None and grant.upstream not in exclude and grant.upstream.in_rotation:
                QUEUE_WAIT_SECONDS.observe(time.perf_counter() - started)
                return grant
            if grant is not None:
                self.release(grant)
        servers = self._placement.limited(holders, exclude)
        if servers is None:
            return None
        if not servers:
            upstream = self._pool.pick(self._placement.unlimited(holders, exclude))
            return None if upstream is None else Grant(upstream, "", None)
        try:
            taken = await self._take(servers, ticket, enqueue=True)
        finally:
            QUEUE_WAIT_SECONDS.observe(time.perf_counter() - started)
        if taken is None:  # pragma: no cover - an enqueued request waits until granted
            raise RuntimeError("enqueued acquire returned no grant")
        return taken

    def release(self, grant: Grant) -> None:
        """Give `grant`'s slot back (the response has ended; nobody waits on this):
        to this process's next request for the server, with its next acquire script,
        or alone within `RELEASE_DELAY_SECONDS` (scheduler/releases.py)."""
        self.holdings.release(grant)

    async def _take(
        self, servers: list[ServerSlots], ticket: WaitTicket, *, enqueue: bool
    ) -> Grant | None:
        """A grant now, or (`enqueue`) after waiting in the queue; None when only
        trying and no slot was free."""
        waiter = ids.random_hex()
        turn: asyncio.Future[str] | None = None
        if enqueue:  # registered before the script: a wake-up may beat its reply
            turn = self._waiters[waiter] = asyncio.get_running_loop().create_future()
        try:
            reply = await self._run(
                "acquire", self._acquire_args(ticket, waiter, servers, enqueue=enqueue)
            )
        except asyncio.CancelledError:
            # The script may have run (granted or queued it): out of the queue, and a
            # slot it got goes on to the next in line.
            self._waiters.pop(waiter, None)
            self._spawn(self._drop("waiter", waiter))
            raise
        except BaseException:
            self._waiters.pop(waiter, None)
            raise
        grant = self._granted(reply, waiter)
        if grant is not None:
            self._waiters.pop(waiter, None)
            return grant
        if turn is None:
            return None
        self._expect_expiry(acquired_reply(reply)[3])
        server = await self._wait(waiter, turn, ticket.deadline)
        return self.holdings.hold(waiter, server, asyncio.get_running_loop().time())

    def _acquire_args(
        self, ticket: WaitTicket, waiter: str, servers: list[ServerSlots], *, enqueue: bool
    ) -> tuple[str, ...]:
        """acquire's own arguments (scheduler/lua/acquire.lua)."""
        # Only a try carries ended grants: nothing cancels it (a waiter is cancelled
        # when its client leaves), so the wake-ups in its reply are never lost.
        released = [] if enqueue else self.holdings.take_back(everything=len(servers) > 1)
        flag = "1" if enqueue else "0"
        return (
            ticket.tenant, str(ticket.weight), waiter, flag, str(len(servers)),
            *(s.id for s in servers), str(len(released) // 2), *released,
        )  # fmt: skip

    def _send_try(
        self, ticket: WaitTicket, waiter: str, servers: list[ServerSlots]
    ) -> asyncio.Future[Reply]:
        """Queue a try's acquire script now (`ScriptStore.submit`): no task, no wait."""
        args = self._acquire_args(ticket, waiter, servers, enqueue=False)
        return self._store.submit("acquire", *self._call(args))

    def _granted(self, reply: Reply, waiter: str) -> Grant | None:
        """acquire's reply: its wake-ups delivered, and the grant it made, if any."""
        granted, ident, woken, _, quiet = acquired_reply(reply)
        if woken:
            self._wake_all(woken)
        if not granted:
            return None
        server = self._server(ident)
        self.holdings.learn(server.id, quiet=quiet)
        return self.holdings.hold(waiter, server, asyncio.get_running_loop().time())

    async def _wait(self, waiter: str, turn: asyncio.Future[str], deadline: float) -> ServerSlots:
        QUEUED_REQUESTS.inc()
        self.activity.set()
        try:
            async with asyncio.timeout_at(deadline):
                server = await turn
        except TimeoutError:
            self._spawn(self._drop("waiter", waiter))
            raise server_busy() from None
        except WaiterGone:
            raise server_busy() from None
        except asyncio.CancelledError:
            # The client left: out of the queue at once (or the slot it was just
            # granted goes on to the next in line).
            self._spawn(self._drop("waiter", waiter))
            raise
        finally:
            QUEUED_REQUESTS.dec()
            del self._waiters[waiter]
        return self._server(server)

    # -- wake-ups, the tick and lease refreshes -----------------------------------------

    def wake(self, waiter: str, server: str) -> None:
        """A script granted `waiter` a slot on `server` (a reply, a message, a report)."""
        turn = self._waiters.get(waiter)
        if turn is not None and not turn.done():
            turn.set_result(server)

    def _expect_expiry(self, expiry: str) -> None:
        """Remember the earliest lease expiry a reply named (wall clock, s)."""
        if expiry:
            at = int(expiry) / 1000.0
            if self.next_expiry is None or at < self.next_expiry:
                self.next_expiry = at

    def next_tick_in(self) -> float:
        """Seconds until the next tick: `TICK_SECONDS`, or sooner when a lease expires
        sooner (its slot is then reclaimed and granted at once)."""
        if self.next_expiry is None:
            return TICK_SECONDS
        return min(TICK_SECONDS, max(0.0, self.next_expiry - time.time()) + EXPIRY_MARGIN_SECONDS)

    def _wake_all(self, woken: object) -> None:
        for waiter, server in pairs(woken):
            self.wake(waiter, server)

    async def tick(self) -> None:
        """Reclaim expired leases and grant what they free; learn the fate of this
        process's waiters (a wake-up message may have been lost); refresh the leases of
        the grants held once `refresh_interval` has passed."""
        if self._waiters:
            ids = list(self._waiters)
            reply = await self._run("drop", ("tick", *ids))
            _, woken, reports, expiry = dropped_reply(reply)
            self.next_expiry = None
            self._expect_expiry(expiry)
            self._wake_all(woken)
            for waiter, report in zip(ids, reports, strict=False):
                if report == "":
                    turn = self._waiters.get(waiter)
                    if turn is not None and not turn.done():
                        turn.set_exception(WaiterGone())
                elif report != "w":
                    self.wake(waiter, report)
        now = time.monotonic()
        if self.holdings.count and now - self._last_refresh >= self.refresh_interval:
            self._last_refresh = now
            await self.refresh()

    async def refresh(self) -> None:
        """Push out the leases of every grant this process holds (one script)."""
        args = self.holdings.lease_args()
        if not args:
            return
        reply = await self._run("refresh", args, deferred=True)
        for ident in texts(reply):
            # The lease was reclaimed: this replica stalled for longer than a lease.
            log.warning("slot_lease_lost", upstream=self.holdings.label_of(ident))

    async def aclose(self) -> None:
        """Send the releases still pending and wait for them (bounded by the store's
        timeout)."""
        self.holdings.flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- plumbing -----------------------------------------------------------------------

    async def _drop(self, kind: str, *args: str) -> None:
        try:
            reply = await self._run("drop", (kind, *args), deferred=True)
        except QueueUnavailable:
            return  # logged by _run; the lease or the heartbeat expires by itself
        _, woken, _, _ = dropped_reply(reply)
        self._wake_all(woken)

    def _call(self, args: Sequence[str]) -> tuple[Sequence[str], tuple[str, ...]]:
        """The keys and arguments of a script run now (scheduler/lua/common.lua)."""
        return self.layout.keys, (str(int(time.time() * 1000)), *self._head, *args)

    async def _run(
        self, script: ScriptName, args: Sequence[str], *, deferred: bool = False
    ) -> Reply:
        """The script's reply; `deferred`: nobody waits on it (`ScriptHost.run`)."""
        try:
            return await self._store.run(script, *self._call(args), deferred=deferred)
        except QueueUnavailable as error:
            log.error("queue_unavailable", script=script, error=str(error))
            if script == "acquire":
                raise unavailable("the queue for upstream slots is unavailable") from None
            raise

    def _server(self, ident: str) -> ServerSlots:
        server = self.layout.by_id(ident)
        if server is None:  # pragma: no cover - the scripts only name servers we passed
            raise RuntimeError(f"unknown server {ident}")
        return server

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
