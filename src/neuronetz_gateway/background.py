"""The lifecycle of the gateway's background work: started once, stopped once, cleanly.

`BackgroundTask` is a service whose work is one long-running coroutine, `run()`
(discovery, the upstream prober, the change feed, the audit writer, retention, the
metrics sampler). `start()` runs it as a named task; starting again while it runs does
nothing. `aclose()` stops it, and stopping twice or before a start does nothing. A
service with work to do around its task (a first load, a last flush) overrides
`start`/`aclose` and calls `start_task`/`stop_task`; `stop_task(grace)` first lets
`run()` end by itself (after the service asked it to) before cancelling it.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import structlog

log = structlog.get_logger(__name__)


async def stop(task: asyncio.Task[Any], grace: float = 0.0) -> None:
    """Give `task` up to `grace` seconds to finish, then cancel it; return once it has
    ended. A failure of the task is logged, not raised: stopping always succeeds. If the
    caller is cancelled meanwhile, that cancellation goes on."""
    if grace > 0 and not task.done():
        await asyncio.wait({task}, timeout=grace)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception as error:  # noqa: BLE001 - a stop must not fail because the task did
        log.error("background_task_failed", task=task.get_name(), error=type(error).__name__)


class BackgroundTask:
    """A service running `run()` as one named task; `start`/`aclose` are idempotent."""

    name: ClassVar[str]  # the asyncio task's name
    _task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """The work, until cancelled (or until it ends by itself)."""
        raise NotImplementedError

    @property
    def started(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        self.start_task()

    async def aclose(self) -> None:
        await self.stop_task()

    def start_task(self) -> None:
        """Run `run()` unless it is running already."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop_task(self, grace: float = 0.0) -> None:
        """Stop `run()` (`stop`); nothing if it is not running."""
        task, self._task = self._task, None
        if task is not None:
            await stop(task, grace)
