"""One run of the work for concurrent calls with the same key (auth/single_flight.py)."""

from __future__ import annotations

import asyncio

import pytest

from neuronetz_gateway.auth.single_flight import SingleFlight


class Work:
    """Work that counts its runs and finishes when the test releases it."""

    def __init__(self, result: str = "done", error: Exception | None = None) -> None:
        self.runs = 0
        self.release = asyncio.Event()
        self.result = result
        self.error = error

    async def __call__(self) -> str:
        self.runs += 1
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.result


async def test_concurrent_calls_share_one_run() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = Work()
    callers = [asyncio.create_task(flights.run("k", work)) for _ in range(20)]
    await asyncio.sleep(0)
    assert len(flights) == 1
    work.release.set()
    assert await asyncio.gather(*callers) == ["done"] * 20
    assert work.runs == 1
    assert len(flights) == 0


async def test_different_keys_run_apart() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    first, second = Work("first"), Work("second")
    first.release.set()
    second.release.set()
    results = await asyncio.gather(flights.run("a", first), flights.run("b", second))
    assert list(results) == ["first", "second"]


async def test_every_caller_gets_the_exception() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = Work(error=ValueError("no"))
    callers = [asyncio.create_task(flights.run("k", work)) for _ in range(3)]
    await asyncio.sleep(0)
    work.release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(result, ValueError) for result in results)
    assert work.runs == 1


async def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = Work()
    leaving = asyncio.create_task(flights.run("k", work))
    staying = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    work.release.set()
    assert await staying == "done"
    assert work.runs == 1


async def test_a_later_call_runs_the_work_again() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = Work()
    work.release.set()
    assert await flights.run("k", work) == "done"
    assert await flights.run("k", work) == "done"
    assert work.runs == 2
