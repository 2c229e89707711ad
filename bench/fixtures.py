"""The data a benchmark run needs: its own Postgres database, a tenant and a key.

The database is created (and migrated) for the run and dropped after it. The tenant
and key get limits on every dimension (rpm, tpm, concurrency, daily budget) so the
limiter does its full work on every request, but so generous that nothing is refused.
The key is hashed with the gateway's production Argon2 parameters: the auth flood
must meet the same cost a real deployment has. Redis keys are namespaced by the
tenant's fresh id and deleted at the end (never a FLUSHDB: db 0 is shared).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url

from neuronetz_gateway.admin import keys, tenants
from neuronetz_gateway.admin.limits import LimitUpdate, set_key_limits, set_tenant_limits
from neuronetz_gateway.auth.keys import KeyHasher
from neuronetz_gateway.config import Settings
from neuronetz_gateway.db import migrate
from neuronetz_gateway.db.engine import create_engine, session_factory
from neuronetz_gateway.limits.keys import KEY_NAMESPACE

GENEROUS = {
    "rpm": 100_000_000,
    "tpm": 1_000_000_000_000,
    "max_concurrent": 100_000,
    "daily_tokens": 1_000_000_000_000_000,
}


@dataclass(frozen=True)
class BenchKey:
    secret: str
    prefix: str
    tenant_id: uuid.UUID


def fresh_database_url(admin_url: str) -> str:
    """A URL naming a database that does not exist yet."""
    name = f"nzgw_bench_{uuid.uuid4().hex[:12]}"
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def create_database(admin_url: str) -> str:
    """Create and migrate a fresh database; its URL."""
    url = fresh_database_url(admin_url)
    migrate.upgrade(url)
    return url


def drop_database(admin_url: str, url: str) -> None:
    """Drop the run's database, disconnecting whoever still uses it."""

    async def drop() -> None:
        admin = await asyncpg.connect(migrate.asyncpg_dsn(admin_url))
        try:
            name = make_url(url).database
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(drop())


async def _create_key(database_url: str, *, limited: bool) -> BenchKey:
    defaults = Settings(_env_file=None, database_url=database_url)
    hasher = KeyHasher(
        time_cost=defaults.argon2_time_cost,
        memory_kib=defaults.argon2_memory_kib,
        parallelism=defaults.argon2_parallelism,
    )
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            tenant = await tenants.create_tenant(session, f"bench-{uuid.uuid4().hex[:8]}")
            values = GENEROUS if limited else {}
            update = LimitUpdate(values=values, allow_all_models=True)
            await set_tenant_limits(session, tenant.name, update)
            created = await keys.create_key(session, hasher, tenant_name=tenant.name, name="bench")
            if limited:
                await set_key_limits(session, created.key.prefix, LimitUpdate(values=values))
            return BenchKey(secret=created.secret, prefix=created.key.prefix, tenant_id=tenant.id)
    finally:
        await engine.dispose()


def create_key(database_url: str, *, limited: bool = True) -> BenchKey:
    """A tenant allowed every model, and its key, both with generous limits (or, for
    calibration, none at all: then the limiter skips Redis)."""
    return asyncio.run(_create_key(database_url, limited=limited))


def delete_redis_keys(redis_url: str, tenant_id: uuid.UUID) -> int:
    """Delete the limiter's keys of the run's tenant; how many there were."""

    async def delete() -> int:
        client = aioredis.Redis.from_url(redis_url)
        try:
            names = [name async for name in client.scan_iter(f"{KEY_NAMESPACE}:{{{tenant_id}}}:*")]
            if names:
                await client.delete(*names)
            return len(names)
        finally:
            await client.aclose()

    return asyncio.run(delete())
