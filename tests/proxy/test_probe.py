"""`UpstreamProber`: ejected servers come back once `GET /api/version` answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from neuronetz_gateway.proxy.probe import UpstreamProber
from neuronetz_gateway.proxy.upstreams import CONNECT, UpstreamPool
from tests.doubles.ollama import OllamaDouble
from tests.support.processes import free_port


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as running:
        yield running


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_probe_readmits_servers_that_answer_and_backs_off_the_others(
    session: aiohttp.ClientSession,
) -> None:
    now = [0.0]
    with OllamaDouble() as double:
        dead = f"http://127.0.0.1:{free_port()}"
        pool = UpstreamPool([double.base_url, dead], clock=lambda: now[0])
        alive, gone = pool.upstreams
        pool.eject(alive, CONNECT)
        pool.eject(gone, CONNECT)
        prober = UpstreamProber(pool, session, timeout_seconds=1.0)

        await prober.probe_due()  # back-off not over: nobody is asked
        assert double.requests == []

        now[0] = 1.0
        await prober.probe_due()

        assert [r.path for r in double.requests] == ["/api/version"]
        assert alive.in_rotation
        assert not gone.in_rotation
        assert pool.next_probe_in() == 2.0


async def test_the_background_task_wakes_on_an_ejection(
    session: aiohttp.ClientSession,
) -> None:
    port = free_port()
    double = OllamaDouble(port=port)
    pool = UpstreamPool([f"http://127.0.0.1:{port}"], backoff_base=0.05, backoff_max=0.1)
    [upstream] = pool.upstreams
    prober = UpstreamProber(pool, session, timeout_seconds=1.0)
    await prober.start()
    try:
        pool.eject(upstream, CONNECT)  # nothing listens yet: probes fail and back off
        await wait_for(lambda: upstream.failed_probes >= 2)
        with double:
            await wait_for(lambda: upstream.in_rotation)
    finally:
        await prober.aclose()
