"""Standalone mode's database: every migration on SQLite, and the engine's settings."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.db import migrate
from neuronetz_gateway.db.engine import create_engine, session_factory
from neuronetz_gateway.db.tables import ApiKey, Base, TenantLimits
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
    "audit_batches",
}


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'data' / 'gateway.db'}"


def _tables(url: str) -> set[str]:
    path = url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def _revisions() -> list[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite+aiosqlite:///x"))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_every_revision_steps_up_and_down_on_sqlite(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    revisions = _revisions()
    for revision in revisions:
        migrate.upgrade(url, revision)
        assert migrate.current_revision(url) == revision
    assert _tables(url) >= EXPECTED_TABLES

    for previous in [*reversed(revisions[:-1]), None]:
        migrate.downgrade(url, previous or "base")
        assert migrate.current_revision(url) == previous
    assert _tables(url) == {"alembic_version"}

    migrate.upgrade(url)
    assert migrate.current_revision(url) == revisions[-1]


def test_head_matches_the_table_definitions_on_sqlite(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    url = sqlite_url(tmp_path)
    migrate.upgrade(url)

    async def diff() -> list[object]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
                )
        finally:
            await engine.dispose()

    assert asyncio.run(diff()) == []


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = sqlite_url(tmp_path)
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    yield engine
    await engine.dispose()


async def test_connections_use_wal_a_busy_timeout_and_foreign_keys(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    async with sqlite_engine.connect() as connection:
        settings = [
            (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "busy_timeout", "foreign_keys")
        ]
    assert settings == ["wal", 5000, 1]
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


async def test_defaults_constraints_and_cascades_hold(sqlite_engine: AsyncEngine) -> None:
    async with session_factory(sqlite_engine)() as session:
        tenant = await make_tenant(session)
        name = tenant.name
        key = await make_key(session, name)
        # Server-side defaults are real booleans (not the text 'false', which reads as true).
        await session.execute(sa.delete(TenantLimits).where(TenantLimits.tenant_id == tenant.id))
        await session.execute(
            sa.text("INSERT INTO tenant_limits (tenant_id) SELECT id FROM tenants WHERE name = :n"),
            {"n": name},
        )
        limits = await session.get_one(TenantLimits, tenant.id)
        assert limits.allow_all_models is False
        with pytest.raises(IntegrityError):  # the enum's CHECK constraint
            await session.execute(
                sa.text("UPDATE api_keys SET status = 'lost' WHERE prefix = :p"), {"p": key.prefix}
            )
        await session.rollback()
        with pytest.raises(IntegrityError):  # a foreign key
            await session.execute(
                sa.insert(TenantLimits).values(tenant_id=uuid.uuid4(), allow_all_models=False)
            )
        await session.rollback()
        await session.execute(sa.text("DELETE FROM tenants WHERE name = :n"), {"n": name})
        await session.commit()
        assert await session.scalar(sa.select(sa.func.count()).select_from(ApiKey)) == 0


async def test_timestamps_come_back_in_utc(sqlite_engine: AsyncEngine) -> None:
    """SQLite keeps no zone: values go in as UTC and come back aware."""
    async with session_factory(sqlite_engine)() as session:
        tenant = await make_tenant(session)
        key = await make_key(session, tenant.name, expires_in=timedelta(hours=1))
        later = datetime.now(UTC) + timedelta(minutes=30)
        row = await session.get_one(ApiKey, key.key_id)
        assert row.created_at.tzinfo is not None
        assert row.expires_at is not None
        assert row.expires_at.utcoffset() == timedelta(0)
        assert row.expires_at > later
        # Comparisons in SQL agree with Python's.
        found = await session.scalar(
            sa.select(sa.func.count())
            .select_from(ApiKey)
            .where(ApiKey.expires_at > later.astimezone(UTC))
        )
        assert found == 1
