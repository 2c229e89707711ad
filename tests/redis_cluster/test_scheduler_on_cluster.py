"""The fair-share scheduler's scripts on a real three-master Redis Cluster
(docs/SCHEDULING.md, docs/REDIS_CLUSTER.md): every key shares `{nzq}`, so each script is
one call to one master; the wake-up sent by a script on that master reaches a replica
subscribed at the seed node (classic pub/sub spans the cluster). The same tests as on
one Redis, with each scheduler on a `ClusterClient`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from neuronetz_gateway.proxy.upstreams import UpstreamPool
from neuronetz_gateway.redis_cluster import ClusterClient, key_slot
from neuronetz_gateway.scheduler import ScriptStore, SlotScheduler
from neuronetz_gateway.scheduler.layout import NAMESPACE
from neuronetz_gateway.scheduler.service import QueueService
from neuronetz_gateway.scripting import RedisHost
from tests.scheduler import test_queue as on_one_redis
from tests.scheduler.conftest import LEASE_SECONDS, REDIS, ReplicaFactory
from tests.support.redis_cluster import RedisClusterNodes

test_free_slots_are_granted_at_once_then_requests_wait_for_a_release = (
    on_one_redis.test_free_slots_are_granted_at_once_then_requests_wait_for_a_release
)
test_weights_share_slots_3_to_1_and_each_tenant_in_arrival_order = (
    on_one_redis.test_weights_share_slots_3_to_1_and_each_tenant_in_arrival_order
)
test_a_slot_granted_on_one_replica_wakes_a_waiter_on_another = (
    on_one_redis.test_a_slot_granted_on_one_replica_wakes_a_waiter_on_another
)
test_a_lease_nobody_refreshes_is_reclaimed_by_the_tick = (
    on_one_redis.test_a_lease_nobody_refreshes_is_reclaimed_by_the_tick
)


@pytest.fixture(scope="module", autouse=True)
def _queue_away_from_the_seed(cluster: RedisClusterNodes) -> None:
    """The scheduler's slot on another master than the seed, where the replicas
    subscribe: wake-ups published by its scripts cross the cluster bus."""
    slot = key_slot(NAMESPACE)
    if cluster.owner(slot) == cluster.ports[0]:
        cluster.move_slot(slot, cluster.ports[1])
    assert cluster.owner(slot) != cluster.ports[0]


@pytest.fixture
def host_kind() -> str:
    return REDIS


@pytest.fixture
async def replicas(cluster: RedisClusterNodes) -> AsyncIterator[ReplicaFactory]:
    """As tests/scheduler/conftest.py's, on the cluster: the scripts over a
    `ClusterClient`, the wake-up subscription at the seed node."""
    async with AsyncExitStack() as stack:

        async def start(urls: list[str], slots: list[int], lease: float = LEASE_SECONDS) -> Any:
            client = ClusterClient(cluster.url)
            stack.push_async_callback(client.aclose)
            pool = UpstreamPool(urls)
            scheduler = SlotScheduler(
                ScriptStore(RedisHost(client)), pool, slots, lease_seconds=lease, wake_channels=True
            )
            service = QueueService(scheduler, cluster.url)
            await service.start()
            stack.push_async_callback(service.aclose)
            return scheduler

        yield start
