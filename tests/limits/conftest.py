"""Fixtures for the limiter tests: real Redis (keys under random tenant ids, removed
afterwards), real Postgres as the usage source, and a fixed clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.auth.principal import UNLIMITED, LimitValues
from neuronetz_gateway.limits import AdmissionRequest, PostgresUsageSource, RedisLimiter
from neuronetz_gateway.limits.keys import KEY_NAMESPACE
from tests.support.databases import REDIS_URL

# Thursday 2026-11-26 12:00:00 UTC: whole seconds, mid-day, mid-month.
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
LEASE_SECONDS = 5
DEFAULT_MAX_OUTPUT = 100

MakeLimiter = Callable[..., RedisLimiter]


def admission(
    tenant_id: uuid.UUID,
    key_id: uuid.UUID,
    *,
    tenant: LimitValues = UNLIMITED,
    key: LimitValues | None = None,
    prompt: int = 10,
    cap: int | None = None,
    output: bool = True,
    at: float = NOW,
) -> AdmissionRequest:
    """A request of `key_id`; the key's own limits (`key`) are inherited like the
    authenticator does it."""
    effective = (key or UNLIMITED).inherit_from(tenant)
    return AdmissionRequest(
        tenant_id=tenant_id,
        key_id=key_id,
        request_id=uuid.uuid4().hex,
        tenant_limits=tenant,
        key_limits=effective,
        prompt_estimate=prompt,
        client_output_cap=cap,
        produces_output=output,
        now=at,
    )


async def delete_tenant_keys(redis: Redis, tenant_id: uuid.UUID) -> None:
    keys = [key async for key in redis.scan_iter(f"{KEY_NAMESPACE}:{{{tenant_id}}}:*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def tenant_id(redis: Redis) -> AsyncIterator[uuid.UUID]:
    """A tenant id of this test alone; its Redis keys are deleted afterwards."""
    value = uuid.uuid4()
    yield value
    await delete_tenant_keys(redis, value)


@pytest.fixture
def make_limiter(engine: AsyncEngine) -> MakeLimiter:
    def make(redis: Redis, **overrides: int) -> RedisLimiter:
        options = {"lease_seconds": LEASE_SECONDS, "default_max_output_tokens": DEFAULT_MAX_OUTPUT}
        options.update(overrides)
        return RedisLimiter(redis, PostgresUsageSource(engine), **options)

    return make


@pytest.fixture
def limiter(make_limiter: MakeLimiter, redis: Redis) -> RedisLimiter:
    return make_limiter(redis)


@pytest.fixture
async def replicas(make_limiter: MakeLimiter) -> AsyncIterator[list[RedisLimiter]]:
    """Three limiters on three Redis clients, like three gateway replicas."""
    clients = [Redis.from_url(REDIS_URL) for _ in range(3)]
    yield [make_limiter(client) for client in clients]
    for client in clients:
        await client.aclose()
