"""Fail closed (docs/REFERENCE.md §4.6): no Redis, or no usage to rebuild from, is never "admitted".

Most of this is about reaching Redis; what both limiters share (an unreadable usage
source, the no-limits fast path) runs on both.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.db.engine import create_engine
from neuronetz_gateway.limits import (
    Limiter,
    LimiterUnavailable,
    MemoryLimiter,
    PostgresUsageSource,
    RedisLimiter,
    RespClient,
    Ticket,
)
from tests.limits.conftest import (
    BACKENDS,
    MakeRedisLimiter,
    admission,
    limiter_options,
)
from tests.support.databases import REDIS_URL

LIMITED = LimitValues(rpm=100, max_concurrent=10)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def client_for(port: int) -> RespClient:
    """A short timeout, so the tests are quick (the gateway's is one second)."""
    return RespClient(f"redis://127.0.0.1:{port}/0", timeout=0.3)


@pytest.fixture
async def dead_redis() -> AsyncIterator[RespClient]:
    client = client_for(unused_port())
    yield client
    await client.aclose()


@pytest.fixture
async def silent_redis() -> AsyncIterator[RespClient]:
    """A server that accepts connections and never answers: the timeout path."""

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = client_for(port)
    yield client
    await client.aclose()
    server.close()


async def test_unreachable_redis_refuses_quickly(
    make_redis_limiter: MakeRedisLimiter, dead_redis: RespClient
) -> None:
    limiter = make_redis_limiter(dead_redis)
    started = time.monotonic()
    with pytest.raises(LimiterUnavailable):
        await limiter.admit(admission(uuid.uuid4(), uuid.uuid4(), tenant=LIMITED))
    assert time.monotonic() - started < 2


async def test_a_redis_that_does_not_answer_times_out_into_unavailable(
    make_redis_limiter: MakeRedisLimiter, silent_redis: RespClient
) -> None:
    limiter = make_redis_limiter(silent_redis)
    started = time.monotonic()
    with pytest.raises(LimiterUnavailable):
        await limiter.admit(admission(uuid.uuid4(), uuid.uuid4(), tenant=LIMITED))
    assert time.monotonic() - started < 2


async def test_settle_and_refresh_report_an_unreachable_redis(
    make_redis_limiter: MakeRedisLimiter, dead_redis: RespClient, tenant_id: uuid.UUID
) -> None:
    limiter = make_redis_limiter(REDIS_URL)
    granted = await limiter.admit(admission(tenant_id, uuid.uuid4(), tenant=LIMITED))
    cut_off = make_redis_limiter(dead_redis)

    with pytest.raises(LimiterUnavailable):
        await cut_off.refresh(granted.ticket)
    with pytest.raises(LimiterUnavailable):
        await cut_off.settle(granted.ticket, 1, 1)
    assert not granted.ticket.settled  # so it can still be settled once Redis is back
    await limiter.settle(granted.ticket, 1, 1)
    assert granted.ticket.settled


@pytest.mark.parametrize("backend", BACKENDS)
async def test_unreadable_usage_refuses_instead_of_admitting_unmetered(
    redis: Redis, tenant_id: uuid.UUID, backend: str
) -> None:
    dead_database = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{unused_port()}/x")
    usage = PostgresUsageSource(dead_database)
    memory = MemoryLimiter(usage, **limiter_options())
    client = RespClient(REDIS_URL)
    limiter: Limiter = (
        memory if backend == "memory" else RedisLimiter(client, usage, **limiter_options())
    )
    try:
        with pytest.raises(LimiterUnavailable):
            await limiter.admit(
                admission(tenant_id, uuid.uuid4(), tenant=LimitValues(daily_tokens=1000))
            )
    finally:
        await dead_database.dispose()
        await client.aclose()
    assert [key async for key in redis.scan_iter(f"nz:lim:{{{tenant_id}}}:*")] == []
    assert memory.host.keys() == []


async def test_unlimited_requests_need_no_redis_at_all(
    make_redis_limiter: MakeRedisLimiter, dead_redis: RespClient
) -> None:
    """The fast path: nothing limited, no round trip (a dead Redis proves it)."""
    limiter = make_redis_limiter(dead_redis)
    granted = await limiter.admit(admission(uuid.uuid4(), uuid.uuid4(), cap=7))

    assert granted.output_cap is None
    assert granted.headers == {}
    assert isinstance(granted.ticket, Ticket)
    assert granted.ticket.is_noop
    assert not granted.ticket.holds_lease
    await limiter.refresh(granted.ticket)
    await limiter.settle(granted.ticket, 100, 100)
