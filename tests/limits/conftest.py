"""Fixtures for the limiter tests: both limiters, their counters, a fixed clock.

Every behaviour test runs twice, on `RedisLimiter` (real Redis, keys under random tenant
ids, removed afterwards) and on `MemoryLimiter` (standalone mode), with the same
assertions: the two cannot drift apart. Counters are read through `Counters`, which
names them by the same keys in both stores. Usage comes from real Postgres.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypedDict, cast

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.auth.principal import UNLIMITED, LimitValues
from neuronetz_gateway.limits import (
    AdmissionRequest,
    MemoryLimiter,
    PostgresUsageSource,
    RedisLimiter,
    RespClient,
)
from neuronetz_gateway.limits.keys import KEY_NAMESPACE
from neuronetz_gateway.limits.script_limiter import ScriptLimiter
from neuronetz_gateway.scripting import LuaHost
from tests.support.databases import REDIS_URL

# Thursday 2026-11-26 12:00:00 UTC: whole seconds, mid-day, mid-month.
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
LEASE_SECONDS = 5
DEFAULT_MAX_OUTPUT = 100
BACKENDS = ("redis", "memory")
# Tests that flush the store use this Redis database and no other test does.
FLUSHABLE_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/13"

MakeRedisLimiter = Callable[..., RedisLimiter]


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


class LimiterOptions(TypedDict):
    lease_seconds: int
    default_max_output_tokens: int


def limiter_options(
    lease_seconds: int = LEASE_SECONDS, default_max_output_tokens: int = DEFAULT_MAX_OUTPUT
) -> LimiterOptions:
    return {"lease_seconds": lease_seconds, "default_max_output_tokens": default_max_output_tokens}


class Counters(Protocol):
    """The limiter's structures, read by key name (the same names in both stores)."""

    async def zcard(self, key: str) -> int: ...
    async def zrange(self, key: str) -> list[str]: ...
    async def hget(self, key: str, name: str) -> str | None: ...
    async def pttl(self, key: str) -> int: ...
    async def exists(self, key: str) -> bool: ...
    async def flush(self) -> None:
        """Lose every counter: a Redis flush, or a restart of a standalone gateway."""
        ...


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisCounters:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def zcard(self, key: str) -> int:
        return int(await self.redis.zcard(key))

    async def zrange(self, key: str) -> list[str]:
        return [_text(member) for member in await self.redis.zrange(key, 0, -1)]

    async def hget(self, key: str, name: str) -> str | None:
        value = await self.redis.hget(key, name)
        return None if value is None else _text(value)

    async def pttl(self, key: str) -> int:
        return int(await self.redis.pttl(key))

    async def exists(self, key: str) -> bool:
        return bool(await self.redis.exists(key))

    async def flush(self) -> None:
        await self.redis.flushdb()


class MemoryCounters:
    """The in-process store, read with the store's own commands."""

    def __init__(self, host: LuaHost) -> None:
        self.host = host

    async def zcard(self, key: str) -> int:
        return int(cast(int, self.host.command("ZCARD", key)))

    async def zrange(self, key: str) -> list[str]:
        return [
            _text(member) for member in cast(list[bytes], self.host.command("ZRANGE", key, 0, -1))
        ]

    async def hget(self, key: str, name: str) -> str | None:
        value = self.host.command("HGET", key, name)
        return None if value is None else _text(value)

    async def pttl(self, key: str) -> int:
        return int(cast(int, self.host.command("PTTL", key)))

    async def exists(self, key: str) -> bool:
        return self.host.command("EXISTS", key) == 1

    async def flush(self) -> None:
        self.host.flush()


async def used_and_reserved(counters: Counters, key: str) -> tuple[int, int]:
    used, reserved = await counters.hget(key, "used"), await counters.hget(key, "resv")
    return int(used or 0), int(reserved or 0)


@dataclass
class Backend:
    """One store and limiters on it; each `limiter()` is like another replica."""

    name: str
    counters: Counters
    _make: Callable[[LimiterOptions], ScriptLimiter]
    _clients: list[RespClient] = field(default_factory=list)

    def limiter(self, **overrides: int) -> ScriptLimiter:
        return self._make(limiter_options(**overrides))


@asynccontextmanager
async def open_backend(name: str, engine: AsyncEngine, redis_url: str) -> AsyncIterator[Backend]:
    usage = PostgresUsageSource(engine)
    if name == "memory":
        host = LuaHost()
        yield Backend(
            name,
            MemoryCounters(host),
            lambda options: MemoryLimiter(usage, host=host, **options),
        )
        return
    clients: list[RespClient] = []

    def make(options: LimiterOptions) -> ScriptLimiter:
        clients.append(RespClient(redis_url))
        return RedisLimiter(clients[-1], usage, **options)

    inspector = Redis.from_url(redis_url)
    try:
        yield Backend(name, RedisCounters(inspector), make, clients)
    finally:
        for client in clients:
            await client.aclose()
        await inspector.aclose()


async def delete_tenant_keys(redis: Redis, tenant_id: uuid.UUID) -> None:
    keys = [key async for key in redis.scan_iter(f"{KEY_NAMESPACE}:{{{tenant_id}}}:*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, engine: AsyncEngine) -> AsyncIterator[Backend]:
    async with open_backend(request.param, engine, REDIS_URL) as opened:
        yield opened


@pytest.fixture
def counters(backend: Backend) -> Counters:
    return backend.counters


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
def limiter(backend: Backend) -> ScriptLimiter:
    return backend.limiter()


@pytest.fixture
def replicas(backend: Backend) -> list[ScriptLimiter]:
    """Three limiters on one store, like three gateway replicas on one Redis (or three
    tasks of one standalone gateway)."""
    return [backend.limiter() for _ in range(3)]


@pytest.fixture
async def make_redis_limiter(engine: AsyncEngine) -> AsyncIterator[MakeRedisLimiter]:
    """Redis-only tests: a limiter on the given client (or a new one for a URL)."""
    opened: list[RespClient] = []

    def make(redis: RespClient | str, **overrides: Any) -> RedisLimiter:
        if isinstance(redis, str):
            opened.append(RespClient(redis))
            redis = opened[-1]
        return RedisLimiter(redis, PostgresUsageSource(engine), **limiter_options(**overrides))

    yield make
    for client in opened:
        await client.aclose()
