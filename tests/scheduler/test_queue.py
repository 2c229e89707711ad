"""The scheduler's scripts on real Redis and in the process (standalone): slots, fair
order, bounds, leases, wake-ups across replicas (docs/SCHEDULING.md). Each test has
servers of its own."""

from __future__ import annotations

import asyncio

import pytest

from neuronetz_gateway.errors import GatewayError
from neuronetz_gateway.scheduler import Grant
from tests.scheduler.conftest import (
    REDIS,
    ReplicaFactory,
    fresh_urls,
    tenant,
    ticket,
    wait_until_queued,
)


async def test_free_slots_are_granted_at_once_then_requests_wait_for_a_release(
    replicas: ReplicaFactory,
) -> None:
    urls = fresh_urls()
    scheduler = await replicas(urls, [2])
    a = tenant()

    first = await scheduler.acquire((), (), ticket(a))
    second = await scheduler.acquire((), (), ticket(a))
    third = asyncio.create_task(scheduler.acquire((), (), ticket(a)))
    await wait_until_queued(scheduler, 1)

    assert first is not None
    assert second is not None
    assert not third.done()
    scheduler.release(first)
    granted = await asyncio.wait_for(third, 2)
    assert granted is not None
    assert granted.upstream.base_url == urls[0]
    assert scheduler.holding == 2


async def test_weights_share_slots_3_to_1_and_each_tenant_in_arrival_order(
    replicas: ReplicaFactory,
) -> None:
    scheduler = await replicas(fresh_urls(), [1])
    heavy, light = tenant(), tenant()
    holder = await scheduler.acquire((), (), ticket(heavy, 3))
    assert holder is not None
    order: list[tuple[str, int]] = []

    async def one(name: str, who: str, weight: int, number: int) -> None:
        grant = await scheduler.acquire((), (), ticket(who, weight, wait=30))
        assert grant is not None
        order.append((name, number))
        scheduler.release(grant)

    tasks = []
    for number in range(40):
        tasks.append(asyncio.create_task(one("A", heavy, 3, number)))
        tasks.append(asyncio.create_task(one("B", light, 1, number)))
        await wait_until_queued(scheduler, len(tasks))
    scheduler.release(holder)
    await asyncio.wait_for(asyncio.gather(*tasks), 20)

    first_40 = [name for name, _ in order[:40]]
    assert first_40.count("A") == 30
    assert first_40.count("B") == 10
    for name in ("A", "B"):
        assert [n for who, n in order if who == name] == list(range(40))


async def test_a_newcomer_waits_for_the_next_slot_not_behind_a_backlog(
    replicas: ReplicaFactory,
) -> None:
    scheduler = await replicas(fresh_urls(), [1])
    busy, newcomer = tenant(), tenant()
    holder = await scheduler.acquire((), (), ticket(busy))
    assert holder is not None
    backlog = [asyncio.create_task(scheduler.acquire((), (), ticket(busy))) for _ in range(20)]
    await wait_until_queued(scheduler, 20)
    mine = asyncio.create_task(scheduler.acquire((), (), ticket(newcomer)))
    await wait_until_queued(scheduler, 21)

    scheduler.release(holder)
    grant = await asyncio.wait_for(mine, 2)

    assert grant is not None
    assert sum(task.done() for task in backlog) == 0  # it went first
    for task in backlog:
        task.cancel()
    await asyncio.gather(*backlog, return_exceptions=True)


async def test_a_wait_past_the_deadline_is_server_busy_and_leaves_the_queue(
    replicas: ReplicaFactory,
) -> None:
    scheduler = await replicas(fresh_urls(), [1])
    a = tenant()
    holder = await scheduler.acquire((), (), ticket(a))
    assert holder is not None

    with pytest.raises(GatewayError) as refused:
        await scheduler.acquire((), (), ticket(a, wait=0.3))

    assert refused.value.status == 503
    assert refused.value.code == "server_busy"
    assert refused.value.headers == {"retry-after": "1"}
    await scheduler.aclose()  # the drop sent in the background has run
    assert scheduler.waiting == 0
    # The slot still goes to the next request: the refused one left no trace.
    scheduler.release(holder)
    assert await scheduler.acquire((), (), ticket(a, wait=1)) is not None


async def test_a_cancelled_waiter_leaves_and_the_slot_goes_to_the_next(
    replicas: ReplicaFactory,
) -> None:
    scheduler = await replicas(fresh_urls(), [1])
    a, b = tenant(), tenant()
    holder = await scheduler.acquire((), (), ticket(a))
    assert holder is not None
    leaving = asyncio.create_task(scheduler.acquire((), (), ticket(a)))
    await wait_until_queued(scheduler, 1)
    staying = asyncio.create_task(scheduler.acquire((), (), ticket(b)))
    await wait_until_queued(scheduler, 2)

    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    await scheduler.aclose()
    scheduler.release(holder)

    grant = await asyncio.wait_for(staying, 2)
    assert isinstance(grant, Grant)
    assert scheduler.holding == 1


async def test_a_slot_granted_on_one_replica_wakes_a_waiter_on_another(
    replicas: ReplicaFactory, host_kind: str
) -> None:
    if host_kind != REDIS:
        pytest.skip("standalone mode has one process: no other replica to wake")
    urls = fresh_urls()
    first = await replicas(urls, [1])
    second = await replicas(urls, [1])
    holder = await first.acquire((), (), ticket(tenant()))
    assert holder is not None
    waiting = asyncio.create_task(second.acquire((), (), ticket(tenant())))
    await wait_until_queued(second, 1)

    started = asyncio.get_running_loop().time()
    first.release(holder)
    grant = await asyncio.wait_for(waiting, 2)

    assert grant is not None
    # Woken by the message, not by the next tick (one second).
    assert asyncio.get_running_loop().time() - started < 0.5


async def test_a_lease_nobody_refreshes_is_reclaimed_by_the_tick(
    replicas: ReplicaFactory,
) -> None:
    urls = fresh_urls()
    dead = await replicas(urls, [1], lease=1.0)
    live = await replicas(urls, [1], lease=1.0)
    held = await dead.acquire((), (), ticket(tenant()))
    assert held is not None
    dead.holdings._held.clear()  # as if its replica died: nobody refreshes or releases it

    started = asyncio.get_running_loop().time()
    grant = await asyncio.wait_for(live.acquire((), (), ticket(tenant())), 5)

    assert grant is not None
    assert asyncio.get_running_loop().time() - started <= 1.0 + 1.0 + 0.5


async def test_the_least_loaded_server_gets_the_request(replicas: ReplicaFactory) -> None:
    urls = fresh_urls(2)
    scheduler = await replicas(urls, [2, 2])
    a = tenant()
    grants = [await scheduler.acquire((), (), ticket(a)) for _ in range(4)]

    assert sorted(g.upstream.base_url for g in grants if g is not None) == sorted(urls * 2)


async def test_unlimited_servers_take_requests_without_the_queue(
    replicas: ReplicaFactory,
) -> None:
    urls = fresh_urls(2)
    scheduler = await replicas(urls, [0, 1])
    grants = [await scheduler.acquire((), (), ticket(tenant())) for _ in range(5)]

    assert {g.upstream.base_url for g in grants if g is not None} == {urls[0]}
    assert scheduler.holding == 0
