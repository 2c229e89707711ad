"""`BackgroundTask`: idempotent start and stop, a grace period, cancellation
that ends the task (and never the caller's own cancellation)."""

from __future__ import annotations

import asyncio
import contextlib

from neuronetz_gateway.background import BackgroundTask


class Loop(BackgroundTask):
    """Runs until cancelled or told to end; records how each run ended."""

    name = "test-loop"

    def __init__(self) -> None:
        self.runs = 0
        self.running = asyncio.Event()
        self.end = asyncio.Event()
        self.endings: list[str] = []

    async def run(self) -> None:
        self.runs += 1
        self.running.set()
        try:
            await self.end.wait()
        except asyncio.CancelledError:
            self.endings.append("cancelled")
            raise
        self.endings.append("ended")


async def test_start_runs_one_named_task_however_often_it_is_called() -> None:
    loop = Loop()
    await loop.start()
    await loop.start()
    await loop.running.wait()
    assert loop.runs == 1
    assert [t for t in asyncio.all_tasks() if t.get_name() == "test-loop"]
    await loop.aclose()
    assert loop.endings == ["cancelled"]
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "test-loop"]


async def test_stopping_twice_or_before_a_start_does_nothing() -> None:
    loop = Loop()
    await loop.aclose()
    await loop.start()
    await loop.running.wait()
    await loop.aclose()
    await loop.aclose()
    assert loop.endings == ["cancelled"]


async def test_a_task_that_ends_within_its_grace_is_not_cancelled() -> None:
    loop = Loop()
    loop.start_task()
    await loop.running.wait()
    loop.end.set()  # what a service's aclose does before stopping its task
    await loop.stop_task(grace=5.0)
    assert loop.endings == ["ended"]


async def test_a_failed_task_is_stopped_without_raising() -> None:
    class Failing(BackgroundTask):
        name = "test-failing"

        async def run(self) -> None:
            raise RuntimeError("broken")

    failing = Failing()
    await failing.start()
    await asyncio.sleep(0)  # let it fail
    await failing.aclose()
    assert not failing.started


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    cleaning_up = asyncio.Event()

    class Slow(BackgroundTask):
        name = "test-slow"

        async def run(self) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cleaning_up.set()
                await asyncio.Event().wait()  # a clean-up that never ends

    slow = Slow()
    await slow.start()
    await asyncio.sleep(0)  # let it start waiting
    stopper = asyncio.create_task(slow.aclose())
    await cleaning_up.wait()  # the stopper is now waiting for the task
    stopper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stopper
    assert stopper.cancelled()
