"""Ended grants on their way back to the queue (docs/SCHEDULING.md).

A grant that ended does not get a script of its own: it rides on this process's next
acquire script, which gives it back before serving anybody (so the queue still comes
first). When no acquire comes within `RELEASE_DELAY_SECONDS`, the grants go back alone
in one drop script. Under load that is one script per request instead of two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# How long an ended grant may wait for the next acquire script to carry it back; its
# slot stays idle at most this long.
RELEASE_DELAY_SECONDS = 0.002


class PendingReleases:
    """Grant ids with their server ids, flat (`id, server, id, server, ...`), as the
    scripts take them; `send_alone` gets them when nobody carried them in time."""

    def __init__(self, send_alone: Callable[[list[str]], None]) -> None:
        self._send_alone = send_alone
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, grant: str, server: str) -> None:
        self._pending += (grant, server)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(RELEASE_DELAY_SECONDS, self.flush)

    def take(self) -> list[str]:
        """Every pending grant, for the script about to run (which gives them back)."""
        pending, self._pending = self._pending, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return pending

    def flush(self) -> None:
        """Send what is pending alone, now."""
        self._timer = None
        pending = self.take()
        if pending:
            self._send_alone(pending)
