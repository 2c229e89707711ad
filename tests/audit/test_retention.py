"""Retention: expired prompt logs, audit rows past AUDIT_RETENTION_DAYS, batch markers,
the background task and the `purge` command. A database of their own, so the counts
are exact whatever other tests wrote."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.audit import (
    RetentionTask,
    purge_expired_prompt_logs,
    purge_old_audit_rows,
    run_retention,
)
from neuronetz_gateway.db.engine import create_engine
from neuronetz_gateway.db.tables import Base
from tests.audit.cli import cli
from tests.audit.conftest import eventually, writer_settings
from tests.support.databases import create_migrated_database, drop_database

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def retention_url() -> Iterator[str]:
    url = create_migrated_database("retention")
    yield url
    drop_database(url)


PURGED_TABLES = ("audit_log", "prompt_logs", "audit_batches")


async def clear(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for name in PURGED_TABLES:
            await connection.execute(sa.delete(Base.metadata.tables[name]))


@pytest.fixture
async def db(retention_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(retention_url)
    await clear(engine)
    yield engine
    await engine.dispose()


async def add_audit_rows(engine: AsyncEngine, *timestamps: datetime) -> None:
    rows = [
        {
            "request_id": f"r-{uuid.uuid4().hex}",
            "ts": ts,
            "method": "POST",
            "route": "/api/chat",
            "status_code": 200,
            "outcome": "ok",
            "latency_ms": 1.0,
        }
        for ts in timestamps
    ]
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(
                "INSERT INTO audit_log (request_id, ts, method, route, status_code, outcome, "
                "latency_ms) VALUES (:request_id, :ts, :method, :route, :status_code, "
                "CAST(:outcome AS request_outcome), :latency_ms)"
            ),
            rows,
        )


async def add_prompt_logs(engine: AsyncEngine, *expiries: datetime) -> None:
    rows: list[dict[str, Any]] = [
        {
            "request_id": f"r-{uuid.uuid4().hex}",
            "tenant_id": uuid.uuid4(),
            "key_id": uuid.uuid4(),
            "ts": expires - timedelta(hours=24),
            "expires_at": expires,
        }
        for expires in expiries
    ]
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(
                "INSERT INTO prompt_logs (request_id, tenant_id, key_id, ts, expires_at, request, "
                "response) VALUES (:request_id, :tenant_id, :key_id, :ts, :expires_at, "
                "'{}'::jsonb, 'r')"
            ),
            rows,
        )


async def add_markers(engine: AsyncEngine, *written: datetime) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            sa.text("INSERT INTO audit_batches (batch_id, written_at) VALUES (:id, :at)"),
            [{"id": uuid.uuid4(), "at": at} for at in written],
        )


async def count(engine: AsyncEngine, table: str) -> int:
    statement = sa.select(sa.func.count()).select_from(Base.metadata.tables[table])
    async with engine.connect() as connection:
        return int(await connection.scalar(statement) or 0)


async def test_expired_prompt_logs_are_deleted_at_their_expiry(db: AsyncEngine) -> None:
    await add_prompt_logs(db, NOW - timedelta(days=1), NOW, NOW + timedelta(seconds=1))

    assert await purge_expired_prompt_logs(db, NOW) == 2
    assert await count(db, "prompt_logs") == 1
    assert await purge_expired_prompt_logs(db, NOW) == 0


async def test_old_audit_rows_are_deleted_in_bounded_batches(db: AsyncEngine) -> None:
    old = NOW - timedelta(days=31)
    await add_audit_rows(db, *[old - timedelta(minutes=i) for i in range(7)])
    await add_audit_rows(db, NOW - timedelta(days=29), NOW)

    assert await purge_old_audit_rows(db, 30, batch_size=2, now=NOW) == 7
    assert await count(db, "audit_log") == 2


async def test_run_retention_purges_all_three_kinds(db: AsyncEngine, retention_url: str) -> None:
    settings = writer_settings(retention_url, audit_retention_days=90)
    await add_audit_rows(db, NOW - timedelta(days=91), NOW - timedelta(days=89))
    await add_prompt_logs(db, NOW - timedelta(hours=1))
    await add_markers(db, NOW - timedelta(days=3), NOW - timedelta(hours=1))

    result = await run_retention(db, settings, NOW)

    assert (result.audit_rows, result.prompt_logs, result.audit_batches) == (1, 1, 1)
    assert await count(db, "audit_log") == 1
    assert await count(db, "audit_batches") == 1


async def test_retention_task_purges_in_the_background(db: AsyncEngine, retention_url: str) -> None:
    await add_prompt_logs(db, datetime.now(UTC) - timedelta(minutes=1))
    task = RetentionTask(db, writer_settings(retention_url), interval_seconds=0.05)
    await task.start()
    try:
        await eventually(lambda: count(db, "prompt_logs"), lambda n: n == 0)
        # It keeps running: a log that expires later is purged by a later run.
        await add_prompt_logs(db, datetime.now(UTC))
        await eventually(lambda: count(db, "prompt_logs"), lambda n: n == 0)
    finally:
        await task.aclose()


def test_purge_command_prints_the_counts(retention_url: str) -> None:
    async def seed() -> None:
        engine = create_engine(retention_url)
        try:
            await clear(engine)
            now = datetime.now(UTC)
            await add_audit_rows(engine, now - timedelta(days=11), now - timedelta(days=12), now)
            await add_prompt_logs(engine, now - timedelta(minutes=1), now + timedelta(hours=1))
        finally:
            await engine.dispose()

    asyncio.run(seed())
    env = {"AUDIT_RETENTION_DAYS": "10"}

    result = cli(retention_url, "purge", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "prompt_logs": 1,
        "audit_rows": 2,
        "audit_batches": 0,
        "audit_retention_days": 10,
    }

    again = cli(retention_url, "purge", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        "purged 0 expired prompt logs, 0 audit rows older than 10 days, 0 audit batch markers"
    )
