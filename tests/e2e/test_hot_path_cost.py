"""What one request costs in round trips (SPEC §2): 0 to Postgres, at most 2 to Redis.

Measured from outside the gateway: Postgres traffic through a proxy that counts query
round trips per connection, Redis through the server's own command statistics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.db.notify import APPLICATION_NAME
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import allow_all_models
from tests.support.databases import REDIS_URL
from tests.support.factories import KeyFixture, make_key, make_tenant
from tests.support.pg_counting_proxy import PostgresCountingProxy, counting_proxy
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway

REQUESTS = 200
BODY = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.fixture(scope="module")
def proxy() -> Iterator[PostgresCountingProxy]:
    with counting_proxy() as running:
        yield running


@pytest.fixture(scope="module")
def quiet_gateway(
    database_url: str, double: OllamaDouble, proxy: PostgresCountingProxy
) -> Iterator[GatewayProcess]:
    # Background writers that would talk to Postgres during the measurement are slowed
    # down: the question is what the *request path* costs.
    process = start_gateway(
        proxy.url(database_url),
        double,
        {"AUDIT_FLUSH_INTERVAL_MS": "600000", "MODEL_DISCOVERY_INTERVAL_SECONDS": "3600"},
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


async def _evalsha_calls(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_steady_state_round_trips(
    quiet_gateway: GatewayProcess, proxy: PostgresCountingProxy, session: AsyncSession
) -> None:
    key = await _limited_key(session)
    headers = {"Authorization": f"Bearer {key.secret}"}
    redis = aioredis.Redis.from_url(REDIS_URL)
    async with httpx.AsyncClient(base_url=quiet_gateway.base_url, timeout=10) as client:
        # Warm-up: the first request verifies the key (Postgres + Argon2) and fills caches.
        for _ in range(3):
            assert (await client.post("/api/chat", json=BODY, headers=headers)).status_code == 200
        postgres_before = proxy.snapshot()
        redis_before = await _evalsha_calls(redis)
        for _ in range(REQUESTS):
            response = await client.post("/api/chat", json=BODY, headers=headers)
            assert response.status_code == 200
        postgres_after = proxy.snapshot()
        redis_after = await _evalsha_calls(redis)
    await redis.aclose()
    pool_round_trips = postgres_after["pool"] - postgres_before["pool"]
    assert pool_round_trips == 0, (postgres_before, postgres_after)
    # The LISTEN connection pings every 5 s whatever the traffic: not per request.
    listener = postgres_after[APPLICATION_NAME] - postgres_before[APPLICATION_NAME]
    assert listener <= 2
    # One admission script and one settlement script per request.
    assert redis_after - redis_before == 2 * REQUESTS


async def test_unlimited_key_needs_no_redis_at_all(
    quiet_gateway: GatewayProcess, session: AsyncSession
) -> None:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    key = await make_key(session, tenant.name)
    headers = {"Authorization": f"Bearer {key.secret}"}
    redis = aioredis.Redis.from_url(REDIS_URL)
    async with httpx.AsyncClient(base_url=quiet_gateway.base_url, timeout=10) as client:
        assert (await client.post("/api/chat", json=BODY, headers=headers)).status_code == 200
        before = await _evalsha_calls(redis)
        await asyncio.gather(
            *(client.post("/api/chat", json=BODY, headers=headers) for _ in range(50))
        )
        after = await _evalsha_calls(redis)
    await redis.aclose()
    assert after == before
