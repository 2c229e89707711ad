"""The limiter on a real Redis Cluster (docs/REFERENCE.md §13, docs/REDIS_CLUSTER.md): two
gateway processes with `REDIS_CLUSTER=true` and a seed node in `REDIS_URL` keep the
limits exactly as on one Redis — the same tests as tests/e2e/test_limits.py — fail
closed when the node of a tenant's slot stops answering, and lose or double nothing
while that slot is resharded under traffic."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.limits.keys import Periods, SubjectKeys, subject_keys
from neuronetz_gateway.redis_cluster import key_slot
from neuronetz_gateway.scheduler.layout import NAMESPACE
from tests.doubles.ollama import OllamaDouble
from tests.e2e import test_limits as on_one_redis
from tests.e2e.conftest import limited_key
from tests.support import redis_cluster
from tests.support.processes import GatewayProcess
from tests.support.redis_cluster import RedisClusterNodes
from tests.support.stack import start_gateway

pytestmark = pytest.mark.skipif(
    not redis_cluster.available(), reason="redis-server / redis-cli not installed"
)

CHAT = on_one_redis.CHAT
auth = on_one_redis.auth

# The same tests as on one Redis, collected here against the cluster's `replicas`.
clients = on_one_redis.clients
test_rpm_is_exact_across_replicas = on_one_redis.test_rpm_is_exact_across_replicas
test_tenant_limit_binds_all_its_keys = on_one_redis.test_tenant_limit_binds_all_its_keys
test_budget_holds_under_concurrency = on_one_redis.test_budget_holds_under_concurrency
test_budget_holds_under_concurrent_streams = on_one_redis.test_budget_holds_under_concurrent_streams
test_tpm_refuses_once_the_window_is_full = on_one_redis.test_tpm_refuses_once_the_window_is_full


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes()
    try:
        yield nodes.start()
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def replicas(
    database_url: str, double: OllamaDouble, cluster: RedisClusterNodes
) -> Iterator[list[GatewayProcess]]:
    env = {
        "REDIS_URL": cluster.url,
        "REDIS_CLUSTER": "true",
        "CONCURRENCY_LEASE_SECONDS": str(on_one_redis.LEASE_SECONDS),
        "BUDGET_DEFAULT_MAX_OUTPUT_TOKENS": "50",
        # ASK and TRYAGAIN are logged at debug level: the resharding test waits for them.
        "LOG_LEVEL": "DEBUG",
    }
    processes = [start_gateway(database_url, double, env) for _ in range(2)]
    yield processes
    for process in processes:
        process.stop()


def tenant_slot(tenant_id: uuid.UUID) -> int:
    return key_slot(str(tenant_id))


async def test_the_node_of_a_tenant_stops_answering_fails_closed(
    clients: list[httpx.AsyncClient],
    session: AsyncSession,
    double: OllamaDouble,
    cluster: RedisClusterNodes,
) -> None:
    # Not the master of the scheduler's slot: while that one is down, every request
    # that needs an Ollama slot fails, whichever tenant's it is (docs/REDIS_CLUSTER.md).
    queue_master = cluster.owner(key_slot(NAMESPACE))
    key = await limited_key(session, key={"rpm": 1000})
    while cluster.owner(tenant_slot(key.tenant_id)) == queue_master:
        key = await limited_key(session, key={"rpm": 1000})
    node = cluster.owner(tenant_slot(key.tenant_id))
    elsewhere = await limited_key(session, key={"rpm": 1000})
    while cluster.owner(tenant_slot(elsewhere.tenant_id)) == node:
        elsewhere = await limited_key(session, key={"rpm": 1000})
    assert (await clients[0].post("/api/chat", json=CHAT, headers=auth(key))).status_code == 200
    double.clear()
    cluster.pause(node)
    try:
        down = await clients[0].post("/api/chat", json=CHAT, headers=auth(key))
        # Tenants whose slots other masters serve are not affected.
        other = await clients[1].post("/api/chat", json=CHAT, headers=auth(elsewhere))
    finally:
        cluster.resume(node)
    assert down.status_code == 503
    assert int(down.headers["retry-after"]) >= 1
    assert "unavailable" in down.json()["error"]
    assert other.status_code == 200
    assert len(double.requests) == 1  # the other tenant's; never one served unmetered
    back = await clients[0].post("/api/chat", json=CHAT, headers=auth(key))
    assert back.status_code == 200


class Traffic:
    """Requests of one key, alternating between the replicas, until told to stop."""

    def __init__(self, clients: list[httpx.AsyncClient], headers: dict[str, str]) -> None:
        self.clients = clients
        self.headers = headers
        self.responses: list[httpx.Response] = []
        self._stop = asyncio.Event()
        self._progress = asyncio.Condition()

    async def run(self, worker: int) -> None:
        client = self.clients[worker % len(self.clients)]
        while not self._stop.is_set():
            response = await client.post("/api/chat", json=CHAT, headers=self.headers)
            async with self._progress:
                self.responses.append(response)
                self._progress.notify_all()

    async def until(self, count: int) -> None:
        """Until `count` responses have come back."""
        async with self._progress:
            await self._progress.wait_for(lambda: len(self.responses) >= count)

    def stop(self) -> None:
        self._stop.set()


def logged(replicas: list[GatewayProcess], needle: str) -> int:
    return sum(process.logs().count(needle) for process in replicas)


def wait_for_redirect(replicas: list[GatewayProcess], kind: str) -> None:
    """Block (the migration thread) until a replica follows one more `kind` redirection."""
    needle = f'"kind":"{kind}"'
    seen = logged(replicas, needle)
    deadline = time.monotonic() + 10
    while logged(replicas, needle) <= seen:
        assert time.monotonic() < deadline, f"no {kind} under traffic"
        replicas[0].log.wait_for_count(needle, seen + 1, 0.05)


async def test_resharding_a_tenants_slot_under_traffic_loses_and_doubles_nothing(
    clients: list[httpx.AsyncClient],
    replicas: list[GatewayProcess],
    session: AsyncSession,
    engine: AsyncEngine,
    double: OllamaDouble,
    cluster: RedisClusterNodes,
) -> None:
    """The tenant's slot moves key by key to another master while two replicas admit
    its requests; the migration waits, half done, until a replica was told TRYAGAIN,
    and with every key moved, until one was told ASK. Afterwards: exactly `rpm`
    admitted, no 503, and the counters at the new master equal the truth."""
    rpm = 40
    key = await limited_key(session, tenant={"daily_tokens": 1_000_000}, key={"rpm": rpm})
    slot = tenant_slot(key.tenant_id)
    source = cluster.owner(slot)
    target = next(port for port in cluster.ports if port != source)
    traffic = Traffic(clients, auth(key))
    workers = [asyncio.create_task(traffic.run(worker)) for worker in range(4)]
    try:
        await traffic.until(10)  # the counters exist at the source
        await asyncio.to_thread(
            cluster.move_slot,
            slot,
            target,
            lambda moved: wait_for_redirect(replicas, "TRYAGAIN") if moved == 1 else None,
            lambda: wait_for_redirect(replicas, "ASK"),
        )
        after = len(traffic.responses)
        await traffic.until(max(after + 20, 2 * rpm))  # on at the new owner: MOVED first
    finally:
        traffic.stop()
        await asyncio.gather(*workers)

    statuses = [response.status_code for response in traffic.responses]
    assert set(statuses) <= {200, 429}, "an admission was lost (503) during the resharding"
    assert statuses.count(200) == rpm
    assert len(double.requests) == rpm
    assert logged(replicas, '"kind":"MOVED"') >= 1
    assert cluster.owner(slot) == target
    assert cluster.keys_at(source, slot) == []

    counters = cluster.node(target)
    periods = Periods.at(time.time())
    key_keys = subject_keys(key.tenant_id, key.key_id, periods)
    tenant_keys = subject_keys(key.tenant_id, None, periods)
    assert counters.zcard(key_keys.rpm) == rpm  # every admission counted once
    truth = await _tokens_in_postgres(engine, key.tenant_id, len(statuses))
    await _settled(counters, tenant_keys)
    assert counters.hget(tenant_keys.daily, "used") == str(truth)
    assert counters.hget(tenant_keys.daily, "resv") == "0"


async def _settled(counters: object, keys: SubjectKeys) -> None:
    """Until no lease of the tenant is held (the last settlements run after the last
    responses went out)."""
    import redis

    assert isinstance(counters, redis.Redis)
    deadline = time.monotonic() + 5
    while counters.zcard(keys.live) or counters.hlen(keys.reservations):
        assert time.monotonic() < deadline, "requests never settled"
        await asyncio.sleep(0.05)


async def _tokens_in_postgres(engine: AsyncEngine, tenant_id: uuid.UUID, requests: int) -> int:
    """The tenant's recorded tokens, once the audit writer has recorded `requests`
    (refused ones count as requests, with no tokens)."""
    deadline = time.monotonic() + 5
    while True:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.text(
                        "SELECT coalesce(sum(requests), 0), "
                        "coalesce(sum(prompt_tokens + completion_tokens), 0) "
                        "FROM usage_daily WHERE tenant_id = :t"
                    ),
                    {"t": tenant_id},
                )
            ).one()
        if row[0] >= requests or time.monotonic() > deadline:
            assert row[0] == requests
            return int(row[1])
        await asyncio.sleep(0.05)  # the audit writer flushes every 50 ms here
