"""The limiter itself (`RedisLimiter` on `ClusterClient`, in this process) on a real
three-master cluster: exact on every master, scripts reloaded where a node lost them,
and admissions with settlements while the tenant's slot moves lose or double nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.limits import (
    Admission,
    AdmissionRequest,
    PostgresUsageSource,
    RedisLimiter,
    Refused,
)
from neuronetz_gateway.limits.keys import Periods, subject_keys
from neuronetz_gateway.redis_cluster import ClusterClient, key_slot
from neuronetz_gateway.redis_cluster.topology import Redirect
from tests.limits.conftest import NOW, admission, limiter_options
from tests.support.redis_cluster import RedisClusterNodes


@pytest.fixture
async def replicas(
    cluster: RedisClusterNodes, engine: AsyncEngine
) -> AsyncIterator[list[RedisLimiter]]:
    """Three limiters with a cluster client each, like three gateway replicas."""
    clients = [ClusterClient(cluster.url) for _ in range(3)]
    usage = PostgresUsageSource(engine)
    yield [RedisLimiter(client, usage, **limiter_options()) for client in clients]
    for client in clients:
        await client.aclose()


def tenant_on(cluster: RedisClusterNodes, port: int) -> uuid.UUID:
    """A tenant id whose slot the master at `port` serves."""
    while cluster.owner(key_slot(str(tenant := uuid.uuid4()))) != port:
        pass
    return tenant


async def attempt(limiter: RedisLimiter, request: AdmissionRequest) -> Admission | None:
    try:
        return await limiter.admit(request)
    except Refused:
        return None


async def test_rpm_is_exact_for_tenants_on_every_master(
    cluster: RedisClusterNodes, replicas: list[RedisLimiter]
) -> None:
    tenants = [tenant_on(cluster, port) for port in cluster.ports]
    limits = LimitValues(rpm=10)
    requests = [
        admission(tenant, uuid.uuid4(), tenant=limits) for tenant in tenants for _ in range(30)
    ]
    results = await asyncio.gather(
        *(attempt(replicas[i % 3], request) for i, request in enumerate(requests))
    )
    for index, (tenant, port) in enumerate(zip(tenants, cluster.ports, strict=True)):
        admitted = [r for r in results[30 * index : 30 * (index + 1)] if r is not None]
        assert len(admitted) == 10
        rpm_log = subject_keys(tenant, None, Periods.at(NOW)).rpm
        assert cluster.node(port).zcard(rpm_log) == 10


async def test_a_master_that_lost_its_scripts_gets_them_again(
    cluster: RedisClusterNodes, replicas: list[RedisLimiter]
) -> None:
    port = cluster.ports[1]
    tenant = tenant_on(cluster, port)
    limits = LimitValues(rpm=5)
    assert await replicas[0].admit(admission(tenant, uuid.uuid4(), tenant=limits))
    cluster.node(port).script_flush()  # a restart of that master, say
    assert await replicas[0].admit(admission(tenant, uuid.uuid4(), tenant=limits))
    rpm_log = subject_keys(tenant, None, Periods.at(NOW)).rpm
    assert cluster.node(port).zcard(rpm_log) == 2


async def test_admissions_and_settlements_during_a_resharding_are_exact(
    cluster: RedisClusterNodes, engine: AsyncEngine
) -> None:
    """20 admissions, then the tenant's slot starts moving key by key to another master;
    half-way, 180 more admissions (rpm 120 in all, a daily budget), each settled with 7
    tokens, run into it from three replicas; the migration goes on once one was told
    TRYAGAIN. Nothing is lost, nothing counted twice."""
    told: list[str] = []
    tryagain = asyncio.Event()

    def record(redirect: Redirect) -> None:
        told.append(redirect.kind)
        if redirect.kind == "TRYAGAIN":
            tryagain.set()

    clients = [ClusterClient(cluster.url, on_redirect=record) for _ in range(3)]
    usage = PostgresUsageSource(engine)
    replicas = [RedisLimiter(client, usage, **limiter_options()) for client in clients]
    tenant, key = uuid.uuid4(), uuid.uuid4()
    limits = LimitValues(rpm=120, daily_tokens=1_000_000)
    slot = key_slot(str(tenant))
    source = cluster.owner(slot)
    target = next(port for port in cluster.ports if port != source)

    async def one(index: int) -> bool:
        admitted = await attempt(replicas[index % 3], admission(tenant, key, tenant=limits))
        if admitted is not None:
            await replicas[(index + 1) % 3].settle(admitted.ticket, 3, 4)
        return admitted is not None

    loop = asyncio.get_running_loop()
    half_moved, resume = asyncio.Event(), asyncio.Event()

    def between_keys(moved: int) -> None:
        if moved == 1:
            loop.call_soon_threadsafe(half_moved.set)
            asyncio.run_coroutine_threadsafe(resume.wait(), loop).result(10)

    try:
        before = [await one(index) for index in range(20)]
        migration = asyncio.create_task(
            asyncio.to_thread(cluster.move_slot, slot, target, between_keys)
        )
        await half_moved.wait()
        during = asyncio.gather(*(one(index) for index in range(20, 200)))
        await tryagain.wait()
        resume.set()
        await migration
        outcomes = [*before, *await during]
    finally:
        resume.set()
        for client in clients:
            await client.aclose()

    assert outcomes.count(True) == 120
    assert outcomes.count(False) == 80
    assert {"TRYAGAIN", "MOVED"} <= set(told)
    keys = subject_keys(tenant, None, Periods.at(NOW))
    node = cluster.node(target)
    assert cluster.owner(slot) == target
    assert cluster.keys_at(source, slot) == []
    assert node.zcard(keys.rpm) == 120
    assert node.hget(keys.daily, "used") == str(120 * 7)
    assert node.hget(keys.daily, "resv") == "0"
    assert node.zcard(keys.live) == 0
