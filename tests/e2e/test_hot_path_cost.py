"""What one request costs in round trips (docs/REFERENCE.md §2): 0 to Postgres, at most 2 to Redis
(the slot's acquire, when there is one, shares a write with the admission script; its
release goes to the next request or rides on a later script: docs/SCHEDULING.md).

Measured from outside the gateway: Postgres and Redis traffic each pass through a proxy
that counts query round trips (Postgres, per connection) and commands (Redis, by name).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.db.notify import APPLICATION_NAME
from neuronetz_gateway.scheduler.layout import NAMESPACE, server_id
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import allow_all_models
from tests.support.databases import REDIS_URL
from tests.support.factories import KeyFixture, make_key, make_tenant
from tests.support.pg_counting_proxy import PostgresCountingProxy, counting_proxy
from tests.support.processes import GatewayProcess
from tests.support.redis_counting_proxy import RedisCountingProxy, redis_counting_proxy
from tests.support.stack import start_gateway

REQUESTS = 200
BODY = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.fixture(scope="module")
def proxy() -> Iterator[PostgresCountingProxy]:
    with counting_proxy() as running:
        yield running


@pytest.fixture(scope="module")
def redis_proxy() -> Iterator[RedisCountingProxy]:
    with redis_counting_proxy() as running:
        yield running


@pytest.fixture(scope="module")
def quiet_gateway(
    database_url: str,
    double: OllamaDouble,
    proxy: PostgresCountingProxy,
    redis_proxy: RedisCountingProxy,
) -> Iterator[GatewayProcess]:
    # Background writers that would talk to Postgres during the measurement are slowed
    # down: the question is what the *request path* costs.
    process = start_gateway(
        proxy.url(database_url),
        double,
        {
            "AUDIT_FLUSH_INTERVAL_MS": "600000",
            "MODEL_DISCOVERY_INTERVAL_SECONDS": "3600",
            "REDIS_URL": redis_proxy.url(),
        },
    )
    yield process
    process.stop()


async def _limited_key(session: AsyncSession) -> KeyFixture:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    await session.execute(
        sa.text(
            "UPDATE tenant_limits SET rpm = 100000, tpm = 100000000, max_concurrent = 1000,"
            " daily_tokens = 100000000 WHERE tenant_id = :t"
        ),
        {"t": tenant.id},
    )
    await session.commit()
    return await make_key(session, tenant.name)


async def test_steady_state_round_trips(
    quiet_gateway: GatewayProcess,
    proxy: PostgresCountingProxy,
    redis_proxy: RedisCountingProxy,
    session: AsyncSession,
) -> None:
    key = await _limited_key(session)
    headers = {"Authorization": f"Bearer {key.secret}"}
    async with httpx.AsyncClient(base_url=quiet_gateway.base_url, timeout=10) as client:
        # Warm-up: the first request verifies the key (Postgres + Argon2) and fills
        # caches; a few concurrent ones grow the Redis connection pool (a settlement
        # runs after its response has gone out, beside the next request's admission).
        assert (await client.post("/api/chat", json=BODY, headers=headers)).status_code == 200
        warm = [client.post("/api/chat", json=BODY, headers=headers) for _ in range(8)]
        assert {r.status_code for r in await asyncio.gather(*warm)} == {200}
        await _settled(redis_proxy)
        postgres_before = proxy.snapshot()
        redis_before = redis_proxy.snapshot()
        for _ in range(REQUESTS):
            response = await client.post("/api/chat", json=BODY, headers=headers)
            assert response.status_code == 200
        await _settled(redis_proxy)
        postgres_after = proxy.snapshot()
        redis_after = redis_proxy.snapshot()
    pool_round_trips = postgres_after["pool"] - postgres_before["pool"]
    assert pool_round_trips == 0, (postgres_before, postgres_after)
    # The LISTEN connection pings every 5 s whatever the traffic: not per request.
    listener = postgres_after[APPLICATION_NAME] - postgres_before[APPLICATION_NAME]
    assert listener <= 2
    # Per request: the admission and settlement scripts. The slot: taken over from the
    # request before (no script) when it came within the release delay, else an
    # acquire script, which the release rides on, or goes alone when no acquire came
    # in time either (this client is slow to send the next request).
    spent = redis_after - redis_before
    assert set(spent) == {"EVALSHA"}
    assert 2 * REQUESTS <= spent["EVALSHA"] <= 4 * REQUESTS
    # Every slot went back.
    assert await _held(quiet_gateway) == 0


async def _held(gateway: GatewayProcess) -> int:
    """Slots held on the double's server, read straight from Redis."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        held = f"{NAMESPACE}held:{server_id(gateway.env['OLLAMA_BASE_URL'])}"
        return int(await client.zcard(held))
    finally:
        await client.aclose()


async def _settled(redis_proxy: RedisCountingProxy, expected: int | None = None) -> None:
    """Wait (bounded) for the last settlement, which follows its response."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    previous = -1
    while loop.time() < deadline:
        count = redis_proxy.snapshot()["EVALSHA"]
        if count == expected or (expected is None and count == previous):
            return
        previous = count
        await asyncio.sleep(0.05)  # the counter lives in another thread: nothing to await


async def test_unlimited_key_needs_no_limiter_script_only_its_slot(
    quiet_gateway: GatewayProcess, redis_proxy: RedisCountingProxy, session: AsyncSession
) -> None:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    key = await make_key(session, tenant.name)
    headers = {"Authorization": f"Bearer {key.secret}"}
    async with httpx.AsyncClient(base_url=quiet_gateway.base_url, timeout=10) as client:
        assert (await client.post("/api/chat", json=BODY, headers=headers)).status_code == 200
        before = redis_proxy.snapshot()
        started = time.monotonic()
        for _ in range(50):
            assert (await client.post("/api/chat", json=BODY, headers=headers)).status_code == 200
        await _settled(redis_proxy)
        elapsed = time.monotonic() - started
        after = redis_proxy.snapshot()
    # No limiter script: only the acquire of a free slot (unless the request took over
    # the slot of the one before) and, when nothing came within its delay, its
    # release. Besides them, the scheduler's tick (at most once a second while this
    # process holds a slot) may run its script; on a slow machine the 50 requests span
    # a few ticks.
    spent = after - before
    assert set(spent) == {"EVALSHA"}
    assert spent["EVALSHA"] <= 2 * 50 + math.ceil(elapsed) + 1
    assert await _held(quiet_gateway) == 0
