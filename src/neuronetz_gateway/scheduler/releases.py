"""Ended grants on their way back to the queue (docs/SCHEDULING.md).

A grant that ended does not get a script of its own. For `RELEASE_DELAY_SECONDS` it
waits in this process:

- the next request of this process takes it over (`latest`, `claim`) when that server
  is the request's only choice: no script at all. Only while nobody waits for that
  server (the scheduler knows from the busy channel and from its scripts' replies) and
  only within `TAKEOVER_MAX_SECONDS` of the slot's last pass through the queue, so
  that a lost busy message delays a waiter by that much at most;
- once older than the delay (or at once, when somebody waits for its server) it rides
  on this process's next acquire script, which gives it back before serving anybody
  (so the queue comes first), or goes back alone, with the other such grants, in one
  drop script when the delay has passed and no acquire came.

Younger grants stay for a taker: under concurrent load ends and starts come in pairs,
and an acquire script that took every pending grant along would leave the next
request nothing to take over. A script choosing among several servers takes them all
along, so that it sees each server's true load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Container
from dataclasses import dataclass

# How long an ended grant waits for the next request of this process; its slot stays
# idle at most this long.
RELEASE_DELAY_SECONDS = 0.002
# How long a slot may go from one request of a process to the next without passing
# through the queue.
TAKEOVER_MAX_SECONDS = 1.0


@dataclass(frozen=True, slots=True, eq=False)
class Ended:
    """A grant that ended: its id, its server, when its slot last passed through the
    queue and when it ended (the event loop's clock)."""

    grant: str
    server: str
    since: float
    at: float


class PendingReleases:
    """The ended grants of this process not yet given back, oldest first;
    `send_alone` gets those nobody took in time (`grant id, server id, ...`)."""

    def __init__(
        self,
        send_alone: Callable[[list[str]], None],
        *,
        takeover_seconds: float = TAKEOVER_MAX_SECONDS,
    ) -> None:
        self._send_alone = send_alone
        self._takeover_seconds = takeover_seconds
        self._pending: list[Ended] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, ended: Ended) -> None:
        self._pending.append(ended)
        if self._timer is None:
            self._arm(ended.at)

    def latest(self) -> Ended | None:
        """The grant that ended last, if any is pending."""
        return self._pending[-1] if self._pending else None

    def claim(self, ended: Ended) -> bool:
        """Take `ended` (from `latest`) over: its slot goes to the caller's request
        without passing through the queue, unless it last passed through the queue
        longer ago than the take-over window (then it must go back)."""
        now = asyncio.get_running_loop().time()
        if ended.since < now - self._takeover_seconds:
            return False
        pending = self._pending
        if not pending or pending[-1] is not ended:
            return False
        pending.pop()
        if not pending and self._timer is not None:
            self._timer.cancel()  # nothing left to send
            self._timer = None
        return True

    def take(self, busy: Container[str]) -> list[str]:
        """For the acquire script about to run, which gives them back: every grant but
        those a request could still take over (younger than the delay, within the
        take-over window, on a server not in `busy`)."""
        if not self._pending:
            return []
        now = asyncio.get_running_loop().time()
        cut, window = now - RELEASE_DELAY_SECONDS, now - self._takeover_seconds
        going: list[Ended] = []
        staying: list[Ended] = []
        for ended in self._pending:
            takeable = ended.at > cut and ended.since >= window and ended.server not in busy
            (staying if takeable else going).append(ended)
        self._pending = staying
        self._rearm()
        return [part for ended in going for part in (ended.grant, ended.server)]

    def flush(self) -> None:
        """Send every pending grant back alone, now (shutdown)."""
        pending, self._pending = self._pending, []
        self._rearm()
        if pending:
            self._send_alone([part for e in pending for part in (e.grant, e.server)])

    def _expired(self) -> None:
        """The timer: send the grants past the delay alone."""
        self._timer = None
        cut = asyncio.get_running_loop().time() - RELEASE_DELAY_SECONDS
        going = [e for e in self._pending if e.at <= cut]
        if going:
            self._pending = [e for e in self._pending if e.at > cut]
            self._send_alone([part for e in going for part in (e.grant, e.server)])
        self._rearm()

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._arm(self._pending[0].at)

    def _arm(self, ended_at: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(ended_at + RELEASE_DELAY_SECONDS, self._expired)
