"""Alembic 0001_initial: round trip on a fresh database, and the §3.3 notifications."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from neuronetz_gateway.db import migrate
from neuronetz_gateway.db.engine import create_engine
from tests.support.databases import drop_database, fresh_database_url
from tests.support.factories import make_key, make_tenant

EXPECTED_TABLES = {
    "tenants",
    "api_keys",
    "tenant_limits",
    "key_limits",
    "models",
    "model_grants",
    "usage_daily",
    "audit_log",
    "prompt_logs",
}


async def _tables_and_types(url: str) -> tuple[set[str], set[str], set[str]]:
    connection = await asyncpg.connect(migrate.asyncpg_dsn(url))
    try:
        tables = {
            r["tablename"]
            for r in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname='public'"
            )
        }
        types = {
            r["typname"]
            for r in await connection.fetch("SELECT typname FROM pg_type WHERE typtype='e'")
        }
        functions = {
            r["proname"]
            for r in await connection.fetch(
                "SELECT proname FROM pg_proc WHERE proname LIKE 'notify_%'"
            )
        }
        return tables, types, functions
    finally:
        await connection.close()


@pytest.fixture
def scratch_url() -> Iterator[str]:
    url = fresh_database_url("mig")
    yield url
    drop_database(url)


def test_upgrade_downgrade_upgrade_round_trip(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    tables, types, functions = asyncio.run(_tables_and_types(scratch_url))
    assert tables >= EXPECTED_TABLES
    assert {"tenant_status", "key_status", "request_outcome"} <= types
    assert functions == {"notify_key_revoked", "notify_config_changed"}

    migrate.downgrade(scratch_url, "base")
    tables, types, functions = asyncio.run(_tables_and_types(scratch_url))
    assert tables == {"alembic_version"}
    assert types == set()
    assert functions == set()
    assert migrate.current_revision(scratch_url) is None

    migrate.upgrade(scratch_url)
    tables, _, _ = asyncio.run(_tables_and_types(scratch_url))
    assert tables >= EXPECTED_TABLES


def _revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("postgresql+asyncpg://x/y"))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_every_revision_steps_up_and_down(scratch_url: str) -> None:
    revisions = _revisions()
    assert revisions[0] == "0001_initial"
    for revision in revisions:
        migrate.upgrade(scratch_url, revision)
        assert migrate.current_revision(scratch_url) == revision
    for previous in [*reversed(revisions[:-1]), None]:
        migrate.downgrade(scratch_url, previous or "base")
        assert migrate.current_revision(scratch_url) == previous


def test_head_matches_the_table_definitions(database_url: str) -> None:
    """The migrations and `db.tables` describe the same schema (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from neuronetz_gateway.db.tables import Base

    async def diff() -> list[object]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
                )
        finally:
            await engine.dispose()

    assert asyncio.run(diff()) == []


def test_allow_all_models_columns_exist(database_url: str) -> None:
    async def columns() -> dict[str, tuple[str, str | None]]:
        connection = await asyncpg.connect(migrate.asyncpg_dsn(database_url))
        try:
            rows = await connection.fetch(
                "SELECT table_name, is_nullable, column_default FROM information_schema.columns "
                "WHERE column_name = 'allow_all_models'"
            )
            return {r["table_name"]: (r["is_nullable"], r["column_default"]) for r in rows}
        finally:
            await connection.close()

    found = asyncio.run(columns())
    assert found["tenant_limits"] == ("NO", "false")
    assert found["key_limits"] == ("YES", None)


class Listener:
    """A real LISTEN connection collecting notifications in a queue."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.received: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        self.received.put_nowait((channel, payload))

    async def listen(self, *channels: str) -> None:
        for channel in channels:
            await self.connection.add_listener(channel, self._on_notify)

    async def next(self, timeout: float = 5.0) -> tuple[str, str]:
        return await asyncio.wait_for(self.received.get(), timeout)


@pytest.fixture
async def listener(database_url: str) -> AsyncIterator[Listener]:
    connection = await asyncpg.connect(migrate.asyncpg_dsn(database_url))
    result = Listener(connection)
    await result.listen("nz_key_revoked", "nz_config_changed")
    yield result
    await connection.close()


async def _drain(listener: Listener) -> list[tuple[str, str]]:
    items = []
    while not listener.received.empty():
        items.append(listener.received.get_nowait())
    return items


async def test_revoking_update_notifies_with_the_prefix(
    session: AsyncSession, engine: AsyncEngine, listener: Listener
) -> None:
    tenant = await make_tenant(session)
    key = await make_key(session, tenant.name)
    await _drain_after_commit(listener)

    async with engine.begin() as connection:
        await connection.execute(
            sa.text("UPDATE api_keys SET status = 'revoked' WHERE prefix = :p"), {"p": key.prefix}
        )
    notifications = [await listener.next(), await listener.next()]
    revoked = [payload for channel, payload in notifications if channel == "nz_key_revoked"]
    assert revoked == [key.prefix]
    changed = [json.loads(p) for c, p in notifications if c == "nz_config_changed"]
    assert changed == [
        {"table": "api_keys", "tenant_id": str(key.tenant_id), "key_id": str(key.key_id)}
    ]


async def test_deleting_a_key_notifies_revocation(
    session: AsyncSession, engine: AsyncEngine, listener: Listener
) -> None:
    tenant = await make_tenant(session)
    key = await make_key(session, tenant.name)
    await _drain_after_commit(listener)
    async with engine.begin() as connection:
        await connection.execute(
            sa.text("DELETE FROM api_keys WHERE prefix = :p"), {"p": key.prefix}
        )
    channels = {await listener.next(), await listener.next()}
    assert ("nz_key_revoked", key.prefix) in channels


async def test_last_used_at_updates_are_not_configuration(
    session: AsyncSession, engine: AsyncEngine, listener: Listener
) -> None:
    tenant = await make_tenant(session)
    key = await make_key(session, tenant.name)
    await _drain_after_commit(listener)
    async with engine.begin() as connection:
        await connection.execute(
            sa.text("UPDATE api_keys SET last_used_at = now() WHERE id = :id"), {"id": key.key_id}
        )
        # A marker change after it: the only notification we may see is the marker's.
        await connection.execute(
            sa.text("UPDATE tenants SET status = 'suspended' WHERE id = :id"), {"id": tenant.id}
        )
    channel, payload = await listener.next()
    assert channel == "nz_config_changed"
    assert json.loads(payload) == {"table": "tenants", "tenant_id": str(tenant.id), "key_id": None}
    assert listener.received.empty()


@pytest.mark.parametrize(
    ("table", "statement"),
    [
        ("tenant_limits", "UPDATE tenant_limits SET rpm = 5 WHERE tenant_id = :tenant"),
        ("key_limits", "INSERT INTO key_limits (key_id, rpm) VALUES (:key, 3)"),
        (
            "model_grants",
            "INSERT INTO model_grants (tenant_id, key_id, model_name) VALUES (:tenant, :key, 'm')",
        ),
    ],
)
async def test_config_tables_notify(
    session: AsyncSession, engine: AsyncEngine, listener: Listener, table: str, statement: str
) -> None:
    tenant = await make_tenant(session)
    key = await make_key(session, tenant.name)
    await _drain_after_commit(listener)
    async with engine.begin() as connection:
        await connection.execute(sa.text(statement), {"tenant": tenant.id, "key": key.key_id})
    channel, payload = await listener.next()
    body = json.loads(payload)
    assert channel == "nz_config_changed"
    assert body["table"] == table
    if table != "key_limits":
        assert body["tenant_id"] == str(tenant.id)
    if table != "tenant_limits":
        assert body["key_id"] == str(key.key_id)


async def _drain_after_commit(listener: Listener) -> None:
    """Consume the notifications of the fixtures' own inserts (tenant, limits, key)."""
    expected = 3
    for _ in range(expected):
        await listener.next()
    assert await _drain(listener) == []


def test_engine_factory_is_lazy() -> None:
    # Creating an engine for an unreachable server must not connect.
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    asyncio.run(engine.dispose())
