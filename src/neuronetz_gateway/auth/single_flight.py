"""One verification for a burst of requests with the same new key.

Twenty concurrent requests with a key this process has not seen yet should cost one
Postgres lookup and one Argon2 verification, not twenty. `SingleFlight.run(key, work)`
starts `work()` as a task unless one for `key` is already running, and every caller
awaits that task's result (or its exception). The task is shielded from the callers:
a caller that goes away (client disconnect) does not cancel the work the others wait
for, and work that completes without waiters still leaves its result in the caches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any


class SingleFlight[K: Hashable, V]:
    """Concurrent calls with the same key share one run of their work."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def run(self, key: K, work: Callable[[], Coroutine[Any, Any, V]]) -> V:
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(work())
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
