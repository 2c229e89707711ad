"""How a slot goes back (docs/SCHEDULING.md): an ended grant is taken over by this
process's next request for its server while nobody waits for it (no script), or rides on
its next try for a slot, whose script gives it back before serving anybody, so the queue
still comes first; with neither soon it goes back alone within `RELEASE_DELAY_SECONDS`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from neuronetz_gateway.proxy.upstreams import UpstreamPool
from neuronetz_gateway.scheduler import Grant, ScriptStore, SlotScheduler
from neuronetz_gateway.scheduler.releases import RELEASE_DELAY_SECONDS
from neuronetz_gateway.scripting import RedisHost, RespClient
from tests.scheduler.conftest import (
    REDIS,
    ReplicaFactory,
    fresh_urls,
    tenant,
    ticket,
    wait_until_queued,
)
from tests.support.redis_counting_proxy import RedisCountingProxy, redis_counting_proxy


async def test_a_released_slot_goes_to_the_queue_before_the_try_that_carries_it(
    replicas: ReplicaFactory,
) -> None:
    scheduler = await replicas(fresh_urls(), [1])
    holder = await scheduler.acquire((), (), ticket(tenant()))
    assert holder is not None
    queued = asyncio.create_task(scheduler.acquire((), (), ticket(tenant())))
    await wait_until_queued(scheduler, 1)

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
    await wait_until_queued(scheduler, 1)

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
    """A scheduler without the busy channel: it never takes a slot over."""
    async with _counted(counting, wake_channels=False) as scheduler:
        yield scheduler


@pytest.fixture
async def takeover_scheduler(counting: RedisCountingProxy) -> AsyncIterator[SlotScheduler]:
    """A scheduler with the busy channel: an ended grant nobody waits for is taken over."""
    async with _counted(counting, wake_channels=True) as scheduler:
        yield scheduler


@asynccontextmanager
async def _counted(
    counting: RedisCountingProxy,
    *,
    wake_channels: bool,
    takeover_seconds: float = 1.0,
    urls: list[str] | None = None,
) -> AsyncIterator[SlotScheduler]:
    client = RespClient(counting.url())
    urls = urls or fresh_urls()
    scheduler = SlotScheduler(
        ScriptStore(RedisHost(client)),
        UpstreamPool(urls),
        [1] * len(urls),
        lease_seconds=3.0,
        wake_channels=wake_channels,
        takeover_seconds=takeover_seconds,
    )
    try:
        yield scheduler
    finally:
        await scheduler.aclose()
        await client.aclose()


async def _release_then_try(
    scheduler: SlotScheduler, counting: RedisCountingProxy
) -> tuple[Grant, Grant, int]:
    """A grant, released, then the next request's try: the released grant, the one the
    try got, and the scripts counted before the release."""
    first = await scheduler.acquire((), (), ticket(tenant()))
    assert first is not None
    before = counting.snapshot()["EVALSHA"]
    scheduler.release(first)
    second = scheduler.prefetch((), ticket(tenant()))
    assert second is not None
    grant = await asyncio.wait_for(scheduler.tried(second), 2)
    assert grant is not None
    return first, grant, before


async def _wait_until_busy(scheduler: SlotScheduler, server: str) -> None:
    """Until `scheduler` knows that somebody waits for `server` (at most 5 s)."""
    async with asyncio.timeout(5):
        while not scheduler.holdings.is_busy(server):
            await asyncio.sleep(0.005)  # polls local state the busy channel sets


async def test_release_and_the_next_try_are_one_script(
    counted_scheduler: SlotScheduler, counting: RedisCountingProxy
) -> None:
    scheduler = counted_scheduler
    _, _, before = await _release_then_try(scheduler, counting)

    # The slot the release freed is the one the try got: both in one script, and
    # nothing is left to send (a release still pending would go out in aclose).
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


async def test_a_request_right_after_a_release_takes_its_slot_over_without_a_script(
    takeover_scheduler: SlotScheduler, counting: RedisCountingProxy
) -> None:
    scheduler = takeover_scheduler
    first, grant, before = await _release_then_try(scheduler, counting)

    assert grant.id == first.id  # the same lease in the queue, a new request on it
    assert scheduler.holding == 1
    assert counting.snapshot()["EVALSHA"] == before
    scheduler.release(grant)
    await scheduler.aclose()  # the pending release goes back: one script
    assert counting.snapshot()["EVALSHA"] - before == 1


async def test_a_slot_passes_through_the_queue_again_after_the_takeover_window(
    counting: RedisCountingProxy,
) -> None:
    async with _counted(counting, wake_channels=True, takeover_seconds=0.0) as scheduler:
        first, grant, before = await _release_then_try(scheduler, counting)

        assert grant.id != first.id
        assert counting.snapshot()["EVALSHA"] - before == 1  # the try, carrying the release


async def test_nobody_takes_a_slot_over_while_somebody_waits_for_it(
    replicas: ReplicaFactory, host_kind: str
) -> None:
    if host_kind != REDIS:
        pytest.skip("standalone mode takes no slot over: it has no busy channel")
    urls = fresh_urls()
    holder, other = await replicas(urls, [1]), await replicas(urls, [1])
    server = holder.layout.servers[0].id
    await _wait_until_busy(holder, server)  # subscribed: all count as busy until a reply
    held = await holder.acquire((), (), ticket(tenant()))
    assert held is not None
    assert not holder.holdings.is_busy(server)  # the reply said nobody waits

    queued = asyncio.create_task(other.acquire((), (), ticket(tenant())))
    await _wait_until_busy(holder, server)  # the busy message
    holder.release(held)
    newcomer = holder.prefetch((), ticket(tenant()))
    assert newcomer is not None

    assert await asyncio.wait_for(holder.tried(newcomer), 2) is None
    granted = await asyncio.wait_for(queued, 2)
    assert granted is not None


async def test_a_stale_release_never_frees_the_slot_another_request_took_over(
    takeover_scheduler: SlotScheduler, counting: RedisCountingProxy
) -> None:
    scheduler = takeover_scheduler
    first, second, _ = await _release_then_try(scheduler, counting)
    assert second.id == first.id

    scheduler.release(first)  # the first request's grant, released twice

    assert scheduler.holding == 1
    scheduler.release(second)
    assert scheduler.holding == 0


async def test_a_request_with_a_choice_of_servers_goes_through_the_queue(
    counting: RedisCountingProxy,
) -> None:
    urls = fresh_urls(2)
    async with _counted(counting, wake_channels=True, urls=urls) as scheduler:
        first, grant, before = await _release_then_try(scheduler, counting)

        # The script chose (the least loaded server): no take-over where there is a choice.
        assert grant.id != first.id
        assert counting.snapshot()["EVALSHA"] - before == 1
