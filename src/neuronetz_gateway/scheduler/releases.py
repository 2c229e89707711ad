"""Ended grants on their way back to the queue (docs/SCHEDULING.md).

A grant that ended does not get a script of its own. For `RELEASE_DELAY_SECONDS` it
waits in this process:

- the next request of this process takes it over (`latest`, `claim`) when that server
  can serve it: no script at all. Only while nobody waits for that server (the
  scheduler knows from the busy channel and from its scripts' replies) and only within
  `TAKEOVER_MAX_SECONDS` of the slot's last pass through the queue, so that a lost busy
  message delays a waiter by that much at most;
- else it rides on this process's next acquire script, which gives it back before
  serving anybody (so the queue comes first);
- else it goes back alone, with the other pending grants, in one drop script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

# How long an ended grant may wait for the next request or acquire script of this
# process; its slot stays idle at most this long.
RELEASE_DELAY_SECONDS = 0.002
# How long a slot may go from one request of a process to the next without passing
# through the queue.
TAKEOVER_MAX_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Ended:
    """A grant that ended: its id, its server, and when its slot last passed through the
    queue (the event loop's clock)."""

    grant: str
    server: str
    since: float


class PendingReleases:
    """The ended grants of this process not yet given back; `send_alone` gets them as
    the scripts take them (`grant id, server id, ...`) when nobody took them in time."""

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
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(RELEASE_DELAY_SECONDS, self.flush)

    def latest(self) -> Ended | None:
        """The grant that ended last, if any is pending."""
        return self._pending[-1] if self._pending else None

    def claim(self, ended: Ended) -> bool:
        """Take `ended` (from `latest`) over: its slot goes to the caller's request
        without passing through the queue, unless it last passed through the queue
        longer ago than the take-over window (then it must go back)."""
        if ended.since < asyncio.get_running_loop().time() - self._takeover_seconds:
            return False
        pending = self._pending
        pending.remove(ended)
        if not pending and self._timer is not None:
            self._timer.cancel()  # nothing left to send
            self._timer = None
        return True

    def take(self) -> list[str]:
        """Every pending grant, for the script about to run (which gives them back)."""
        pending, self._pending = self._pending, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return [part for ended in pending for part in (ended.grant, ended.server)]

    def flush(self) -> None:
        """Send what is pending alone, now."""
        self._timer = None
        pending = self.take()
        if pending:
            self._send_alone(pending)
