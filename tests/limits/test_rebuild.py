"""Budget counters are a cache of usage_daily (docs/REFERENCE.md §4.6): rebuilt when missing.

Counters go missing when Redis is flushed or a standalone gateway restarts. These tests
flush, so on Redis they use the dedicated db 13 and nothing else does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.db.tables import UsageDaily
from neuronetz_gateway.limits import Limiter, RedisLimiter, Refused
from tests.limits.conftest import (
    BACKENDS,
    FLUSHABLE_REDIS_URL,
    NOW,
    Backend,
    Counters,
    MakeRedisLimiter,
    admission,
    open_backend,
    used_and_reserved,
)
from tests.support.factories import KeyFixture, make_key, make_tenant

TODAY, YESTERDAY = date(2026, 11, 26), date(2026, 11, 25)


@pytest.fixture(params=BACKENDS)
async def flushable_backend(
    request: pytest.FixtureRequest, engine: AsyncEngine
) -> AsyncIterator[Backend]:
    async with open_backend(request.param, engine, FLUSHABLE_REDIS_URL) as opened:
        await opened.counters.flush()
        yield opened
        await opened.counters.flush()


@pytest.fixture
def flushable(flushable_backend: Backend) -> Counters:
    return flushable_backend.counters


@pytest.fixture
def limiter13(flushable_backend: Backend) -> Limiter:
    return flushable_backend.limiter()


async def record_usage(
    session: AsyncSession, key: KeyFixture, day: date, prompt: int, completion: int
) -> None:
    """What the audit writer does after a request: add to the day's rollup row."""
    row = await session.get(UsageDaily, (day, key.tenant_id, key.key_id, "llama3.1:8b"))
    if row is None:
        session.add(
            UsageDaily(
                day=day,
                tenant_id=key.tenant_id,
                key_id=key.key_id,
                model="llama3.1:8b",
                requests=1,
                prompt_tokens=prompt,
                completion_tokens=completion,
            )
        )
    else:
        row.requests += 1
        row.prompt_tokens += prompt
        row.completion_tokens += completion
    await session.commit()


async def usage_in_postgres(session: AsyncSession, key: KeyFixture, since: date) -> int:
    total = await session.scalar(
        sa.select(sa.func.sum(UsageDaily.prompt_tokens + UsageDaily.completion_tokens)).where(
            UsageDaily.key_id == key.key_id, UsageDaily.day >= since
        )
    )
    return int(total or 0)


async def test_missing_counters_are_rebuilt_from_usage_daily(
    limiter13: Limiter, flushable: Counters, session: AsyncSession
) -> None:
    tenant = await make_tenant(session)
    key = await make_key(session, tenant.name)
    other = await make_key(session, tenant.name)
    await record_usage(session, key, TODAY, 200, 100)
    await record_usage(session, key, YESTERDAY, 150, 50)
    await record_usage(session, other, TODAY, 60, 40)
    tenant_limits = LimitValues(monthly_tokens=5000, total_tokens=9000)
    key_limits = LimitValues(daily_tokens=1000)

    await limiter13.admit(
        admission(key.tenant_id, key.key_id, tenant=tenant_limits, key=key_limits)
    )

    base = f"nz:lim:{{{key.tenant_id}}}"
    assert await used_and_reserved(flushable, f"{base}:k:{key.key_id}:bud:d:20261126") == (300, 110)
    assert await used_and_reserved(flushable, f"{base}:t:bud:m:202611") == (600, 110)
    assert await used_and_reserved(flushable, f"{base}:t:bud:total") == (600, 110)
    # The key inherits the tenant's monthly and total budgets: its own counters.
    assert await used_and_reserved(flushable, f"{base}:k:{key.key_id}:bud:total") == (500, 110)
    # TTLs follow the periods: midnight (12 h away) and month end (4.5 days) + 1 h slack.
    day_ttl = await flushable.pttl(f"{base}:k:{key.key_id}:bud:d:20261126")
    month_ttl = await flushable.pttl(f"{base}:t:bud:m:202611")
    total_ttl = await flushable.pttl(f"{base}:t:bud:total")
    assert 13 * 3600_000 - 5000 < day_ttl <= 13 * 3600_000
    assert (4 * 24 + 13) * 3600_000 - 5000 < month_ttl <= (4 * 24 + 13) * 3600_000
    assert 7 * 86400_000 < total_ttl <= 8 * 86400_000


async def test_budget_holds_across_a_redis_flush(
    limiter13: Limiter, flushable: Counters, session: AsyncSession
) -> None:
    tenant = await make_tenant(session)
    key = await make_key(session, tenant.name)
    await record_usage(session, key, TODAY, 100, 100)
    budget = LimitValues(daily_tokens=1000)

    async def spend(until_refused: bool, rounds: int = 100) -> Refused | None:
        for _ in range(rounds):
            try:
                granted = await limiter13.admit(
                    admission(key.tenant_id, key.key_id, key=budget, prompt=20)
                )
            except Refused as refused:
                return refused
            cap = granted.output_cap or 0
            await limiter13.settle(granted.ticket, 20, cap)
            await record_usage(session, key, TODAY, 20, cap)
        assert not until_refused
        return None

    await spend(until_refused=False, rounds=3)  # 200 + 3 x 120 = 560
    await flushable.flush()
    refused = await spend(until_refused=True)

    assert refused is not None
    assert refused.budget_period == "daily"
    spent = await usage_in_postgres(session, key, TODAY)
    assert 1000 - 21 < spent <= 1000

    await flushable.flush()  # and once more: the rebuilt counter still refuses
    with pytest.raises(Refused):
        await limiter13.admit(admission(key.tenant_id, key.key_id, key=budget, prompt=20))


async def test_settling_against_a_rebuilt_counter_adds_only_the_real_tokens(
    limiter13: Limiter, flushable: Counters, session: AsyncSession
) -> None:
    """The rebuilt counter never held the old reservation: nothing is given back."""
    tenant = await make_tenant(session)
    key = await make_key(session, tenant.name)
    await record_usage(session, key, TODAY, 50, 50)
    budget = LimitValues(total_tokens=1000)
    total = f"nz:lim:{{{key.tenant_id}}}:k:{key.key_id}:bud:total"

    before_flush = await limiter13.admit(admission(key.tenant_id, key.key_id, key=budget))
    assert await used_and_reserved(flushable, total) == (100, 110)
    await flushable.flush()
    after_flush = await limiter13.admit(admission(key.tenant_id, key.key_id, key=budget))
    assert await used_and_reserved(flushable, total) == (100, 110)

    await limiter13.settle(before_flush.ticket, 10, 50)
    assert await used_and_reserved(flushable, total) == (160, 110)
    await limiter13.settle(after_flush.ticket, 10, 20)
    assert await used_and_reserved(flushable, total) == (190, 0)


async def test_settling_without_a_counter_leaves_the_rebuild_to_postgres(
    limiter13: Limiter, flushable: Counters, session: AsyncSession
) -> None:
    tenant = await make_tenant(session)
    key = await make_key(session, tenant.name)
    budget = LimitValues(daily_tokens=1000)
    daily = f"nz:lim:{{{key.tenant_id}}}:k:{key.key_id}:bud:d:20261126"

    granted = await limiter13.admit(admission(key.tenant_id, key.key_id, key=budget))
    await flushable.flush()
    await limiter13.settle(granted.ticket, 10, 30, now=NOW + 1)
    assert not await flushable.exists(daily)

    await record_usage(session, key, TODAY, 10, 30)  # the audit writer's part
    await limiter13.admit(admission(key.tenant_id, key.key_id, key=budget, at=NOW + 2))
    assert await used_and_reserved(flushable, daily) == (40, 110)


@pytest.fixture
async def redis13() -> AsyncIterator[Redis]:
    client = Redis.from_url(FLUSHABLE_REDIS_URL)
    yield client
    await client.flushdb()
    await client.aclose()


async def test_the_admission_after_a_flush_uses_a_reloaded_script(
    make_redis_limiter: MakeRedisLimiter, redis13: Redis
) -> None:
    """EVALSHA gets NOSCRIPT after SCRIPT FLUSH (or a restart); the script is reloaded."""
    limiter: RedisLimiter = make_redis_limiter(FLUSHABLE_REDIS_URL)
    tenant_id = uuid.uuid4()
    limits = LimitValues(rpm=10)
    await limiter.admit(admission(tenant_id, uuid.uuid4(), tenant=limits))
    await redis13.script_flush()

    admitted = await limiter.admit(admission(tenant_id, uuid.uuid4(), tenant=limits))
    await limiter.settle(admitted.ticket, 1, 1)  # the settle script, too

    assert admitted.headers["x-ratelimit-remaining-requests"] == "8"
    assert await redis13.zcard(f"nz:lim:{{{tenant_id}}}:t:rpm") == 2
