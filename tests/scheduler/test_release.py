"""How a slot goes back (docs/SCHEDULING.md): an ended grant rides on this process's next
try for a slot, whose script gives it back before serving anybody, so the queue still
comes first; with no try soon it goes back alone within `RELEASE_DELAY_SECONDS`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from neuronetz_gateway.proxy.upstreams import UpstreamPool
from neuronetz_gateway.scheduler import ScriptStore, SlotScheduler
from neuronetz_gateway.scheduler.releases import RELEASE_DELAY_SECONDS
from neuronetz_gateway.scripting import RedisHost, RespClient
from tests.scheduler.conftest import ReplicaFactory, fresh_urls, ticket
from tests.support.redis_counting_proxy import RedisCountingProxy, redis_counting_proxy


def tenant() -> str:
    return str(uuid.uuid4())


async def _wait_until_queued(scheduler: SlotScheduler, count: int) -> None:
    async with asyncio.timeout(5):
        while scheduler.waiting < count:
            await asyncio.sleep(0.005)  # polls local state the acquire calls set


async def test_a_released_slot_goes_to_the_queue_before_the_try_that_carries_it(
    replicas: ReplicaFactory,
) -> None:
    scheduler = await replicas(fresh_urls(), [1])
    holder = await scheduler.acquire((), (), ticket(tenant()))
    assert holder is not None
    queued = asyncio.create_task(scheduler.acquire((), (), ticket(tenant())))
    await _wait_until_queued(scheduler, 1)

    scheduler.release(holder)
    newcomer = scheduler.prefetch((), ticket(tenant()))  # in the same turn: carries it
    assert newcomer is not None

    assert await asyncio.wait_for(scheduler.tried(newcomer), 2) is None
    granted = await asyncio.wait_for(queued, 2)
    assert granted is not None
    assert scheduler.holding == 1


async def test_a_slot_released_on_a_server_the_try_cannot_use_still_serves_its_queue(
    replicas: ReplicaFactory,
) -> None:
    urls = fresh_urls(2)
    scheduler = await replicas(urls, [1, 1])
    holder = await scheduler.acquire((urls[0],), (), ticket(tenant()))
    assert holder is not None
    queued = asyncio.create_task(scheduler.acquire((urls[0],), (), ticket(tenant())))
    await _wait_until_queued(scheduler, 1)

    scheduler.release(holder)
    other = scheduler.prefetch((urls[1],), ticket(tenant()))
    assert other is not None

    elsewhere = await asyncio.wait_for(scheduler.tried(other), 2)
    assert elsewhere is not None
    assert elsewhere.upstream.base_url == urls[1]
    granted = await asyncio.wait_for(queued, 2)
    assert granted is not None
    assert granted.upstream.base_url == urls[0]


async def _count_reaches(counting: RedisCountingProxy, expected: int) -> None:
    async with asyncio.timeout(2):
        while counting.snapshot()["EVALSHA"] < expected:
            await asyncio.sleep(RELEASE_DELAY_SECONDS)  # counted in the proxy's thread


@pytest.fixture
def counting() -> Iterator[RedisCountingProxy]:
    with redis_counting_proxy() as proxy:
        yield proxy


@pytest.fixture
async def counted_scheduler(counting: RedisCountingProxy) -> AsyncIterator[SlotScheduler]:
    client = RespClient(counting.url())
    scheduler = SlotScheduler(
        ScriptStore(RedisHost(client)),
        UpstreamPool(fresh_urls()),
        [1],
        lease_seconds=3.0,
        wake_channels=False,
    )
    try:
        yield scheduler
    finally:
        await scheduler.aclose()
        await client.aclose()


async def test_release_and_the_next_try_are_one_script(
    counted_scheduler: SlotScheduler, counting: RedisCountingProxy
) -> None:
    scheduler = counted_scheduler
    first = await scheduler.acquire((), (), ticket(tenant()))
    assert first is not None
    before = counting.snapshot()["EVALSHA"]

    scheduler.release(first)
    second = scheduler.prefetch((), ticket(tenant()))
    assert second is not None
    grant = await asyncio.wait_for(scheduler.tried(second), 2)

    # The slot the release freed is the one the try got: both in one script, and
    # nothing is left to send (a release still pending would go out in aclose).
    assert grant is not None
    await scheduler.aclose()
    assert counting.snapshot()["EVALSHA"] - before == 1


async def test_a_release_with_no_try_after_it_goes_back_alone(
    counted_scheduler: SlotScheduler, counting: RedisCountingProxy
) -> None:
    scheduler = counted_scheduler
    first = await scheduler.acquire((), (), ticket(tenant()))
    assert first is not None
    before = counting.snapshot()["EVALSHA"]

    released_at = asyncio.get_running_loop().time()
    scheduler.release(first)
    await _count_reaches(counting, before + 1)

    # Sent by its timer, not by a later call (the lease would keep the slot 3 s).
    assert asyncio.get_running_loop().time() - released_at < 0.5
    again = await scheduler.acquire((), (), ticket(tenant(), wait=0.5))
    assert again is not None
