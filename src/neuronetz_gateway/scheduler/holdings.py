"""What this process holds of the queue's slots (docs/SCHEDULING.md): the grants its
requests use, the ended ones on their way back (releases.py), which servers somebody
waits for as far as it knows, and the slots-in-use gauge. No script runs here: the
scheduler sends what `take_back` and `send_alone` hand it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Container, Iterable

from neuronetz_gateway.observability.metrics import UPSTREAM_SLOTS_IN_USE
from neuronetz_gateway.scheduler.grants import Grant
from neuronetz_gateway.scheduler.layout import Layout, ServerSlots
from neuronetz_gateway.scheduler.releases import Ended, PendingReleases


class _Everything:
    def __contains__(self, item: object) -> bool:
        return True


_ALL = _Everything()


class Holdings:
    """The grants of this process, live and ended; see the module docstring."""

    def __init__(
        self,
        layout: Layout,
        send_alone: Callable[[list[str]], None],
        *,
        takeover_seconds: float,
        all_limited: bool,
    ) -> None:
        """`send_alone` gets ended grants (`id, server, ...`) nobody took in time;
        `takeover_seconds` < 0: no grant is ever taken over; `all_limited`: every
        server has a queue (else one without may be the better choice: no take-over)."""
        self._layout = layout
        self._held: dict[str, Grant] = {}  # by id; a taken-over id has a new Grant
        self._takeovers = takeover_seconds >= 0 and all_limited
        self._pending = PendingReleases(
            lambda grants: send_alone(self._going_back(grants)),
            takeover_seconds=takeover_seconds if self._takeovers else -1.0,
        )
        # Servers somebody waits for, as far as this process knows: their ended grants
        # go back through the queue (set by the busy channel, cleared by replies).
        self._busy: set[str] = set()
        self._gauges = {s.id: UPSTREAM_SLOTS_IN_USE.labels(s.label) for s in layout.servers}
        # Set when this process starts holding (or waiting): wakes the idle tick loop.
        self.activity = asyncio.Event()

    @property
    def count(self) -> int:
        return len(self._held)

    def hold(self, waiter: str, server: ServerSlots, since: float) -> Grant:
        """A grant the queue just made to `waiter`."""
        grant = Grant(server.upstream, waiter, server, since)
        self._held[waiter] = grant
        self._gauges[server.id].inc()
        self.activity.set()
        return grant

    def release(self, grant: Grant) -> None:
        """`grant` ended: its slot waits for a taker (releases.py), still held in the
        queue and in the gauge until it goes back."""
        if grant.server is None or self._held.get(grant.id) is not grant:
            return  # no queue, or released already (its id may be another's by now)
        del self._held[grant.id]
        now = asyncio.get_running_loop().time()
        self._pending.add(Ended(grant.id, grant.server.id, grant.since, now))

    def take_over(self, holders: Collection[str]) -> Grant | None:
        """The slot of the latest ended grant, when it may skip the queue and its server
        is the only one the request can go to (`holders`: base URLs; empty: any) and in
        rotation; None otherwise."""
        if not self._takeovers:
            return None
        ended = self._pending.latest()
        if ended is None or ended.server in self._busy:
            return None
        server = self._layout.by_id(ended.server)
        if server is None:  # pragma: no cover - pending grants name our servers
            return None
        upstream = server.upstream
        # Only where there is no choice of server: else the acquire script picks the
        # one with the most free slots (a request must not stick to a busier server).
        if holders:
            if len(holders) != 1 or upstream.base_url not in holders:
                return None
        elif len(self._layout.servers) != 1:
            return None
        if not upstream.in_rotation:
            return None
        if not self._pending.claim(ended):
            return None
        grant = Grant(upstream, ended.grant, server, ended.since)
        self._held[grant.id] = grant
        self.activity.set()
        return grant

    def take_back(self, *, everything: bool = False) -> list[str]:
        """The ended grants the acquire script about to run gives back (releases.py);
        `everything`: all of them (a script choosing among servers must see their
        true load)."""
        busy: Container[str] = _ALL if everything else self._busy
        return self._going_back(self._pending.take(busy))

    def flush(self) -> None:
        """Send every ended grant back now (`send_alone`)."""
        self._pending.flush()

    def _going_back(self, released: list[str]) -> list[str]:
        gauges = self._gauges
        for server in released[1::2]:
            gauges[server].dec()
        return released

    # -- who waits -------------------------------------------------------------------

    def is_busy(self, server: str) -> bool:
        """Whether somebody waits for `server`, as far as this process knows."""
        return server in self._busy

    def mark_busy(self, servers: Iterable[str]) -> None:
        """Somebody waits for `servers` (a busy message)."""
        self._busy.update(servers)

    def mark_all_busy(self) -> None:
        """A busy message may have been lost: every server counts as busy until a reply
        says otherwise."""
        self._busy.update(s.id for s in self._layout.servers)

    def learn(self, server: str, *, quiet: bool) -> None:
        """An acquire script's reply: whether anybody waits for `server` now."""
        if quiet:
            self._busy.discard(server)
        else:
            self._busy.add(server)

    # -- leases ------------------------------------------------------------------------

    def lease_args(self) -> list[str]:
        """`grant id, server id, ...` of every live grant, for the refresh script."""
        return [
            part
            for ident, grant in self._held.items()
            if grant.server is not None
            for part in (ident, grant.server.id)
        ]

    def label_of(self, ident: str) -> str | None:
        grant = self._held.get(ident)
        return grant.server.label if grant is not None and grant.server else None
