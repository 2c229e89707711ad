"""The GPU behind the double: Ollama runs a few model requests at once, the rest wait.

Ollama's runner generates for `OLLAMA_NUM_PARALLEL` requests of a loaded model at a
time; further requests wait first in, first out, without a cap (its `OLLAMA_MAX_QUEUE`
guards models being loaded). `Gpu` models that for the whole double: `parallel`
requests generate at once, the others queue in arrival order, and every generated token
takes `token_seconds`. The server records on each request when it started generating
(`started_at`), next to when it arrived and finished, so tests measure concurrency and
waiting at "Ollama" (see `timeline`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class GpuBusy(Exception):
    """More requests wait than `max_queue` allows: Ollama answers 503."""


class Gpu:
    """How many model requests generate at once, and how fast; knobs change at any time.

    - `parallel`: requests generating at once; 0 = unlimited (the default: every
      request starts when it arrives).
    - `token_seconds`: time per generated token (a stream's frame, a non-streamed
      answer's tokens, one step for an embedding); 0 = as fast as possible.
    - `max_queue`: requests that may wait for a runner; one more gets 503
      `QUEUE_FULL`. None = unbounded, as Ollama for a loaded model.

    Runs on the double's event loop only; the test thread just sets the knobs.
    """

    def __init__(self) -> None:
        self.parallel = 0
        self.token_seconds = 0.0
        self.max_queue: int | None = None
        self._running = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    def _has_room(self) -> bool:
        return self.parallel <= 0 or self._running < self.parallel

    @asynccontextmanager
    async def runner(self) -> AsyncIterator[None]:
        """Hold a runner while generating: wait first in, first out for one if all are
        busy; `GpuBusy` when the queue is full. A cancelled waiter leaves the queue."""
        if not self._has_room() or self._waiting:
            if self.max_queue is not None and len(self._waiting) >= self.max_queue:
                raise GpuBusy
            turn = asyncio.get_running_loop().create_future()
            self._waiting.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._running -= 1  # granted and cancelled in the same turn
                    self._wake()
                elif turn in self._waiting:
                    self._waiting.remove(turn)
                raise
        else:
            self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._wake()

    def _wake(self) -> None:
        """Hand free runners to the longest-waiting requests."""
        while self._waiting and self._has_room():
            turn = self._waiting.popleft()
            if turn.done():
                continue  # its request was cancelled and has not left the queue yet
            self._running += 1
            turn.set_result(None)

    def token_delay(self, chunk_delay: float) -> float:
        """Seconds between two frames of a stream: the behaviour's, else the GPU's."""
        return chunk_delay or self.token_seconds
