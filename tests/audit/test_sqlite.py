"""The audit writer on SQLite (standalone mode): the same rows, exactly once, and the same
split of a refused batch."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.audit import AuditWriter, PromptLogRecord
from neuronetz_gateway.audit.batch import Batch, is_content_error, write_batch
from neuronetz_gateway.audit.retention import run_retention
from neuronetz_gateway.db import migrate
from neuronetz_gateway.db.engine import create_engine, session_factory
from neuronetz_gateway.db.tables import ApiKey, AuditLog, PromptLog, UsageDaily
from tests.audit.conftest import record, writer_settings
from tests.support.factories import KeyFixture, make_key, make_tenant


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sqlite_key(sqlite_engine: AsyncEngine) -> KeyFixture:
    async with session_factory(sqlite_engine)() as session:
        tenant = await make_tenant(session)
        return await make_key(session, tenant.name)


async def count(engine: AsyncEngine, table: type[AuditLog] | type[PromptLog]) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def test_a_retried_batch_is_written_once_and_usage_adds_up(
    sqlite_engine: AsyncEngine, sqlite_key: KeyFixture
) -> None:
    first = Batch([record(sqlite_key, prompt_tokens=3, completion_tokens=4) for _ in range(3)])
    assert await write_batch(sqlite_engine, first) is True
    assert await write_batch(sqlite_engine, first) is False  # the lost-acknowledgement retry
    assert await write_batch(sqlite_engine, Batch([record(sqlite_key)])) is True

    assert await count(sqlite_engine, AuditLog) == 4
    async with sqlite_engine.connect() as connection:
        usage = (
            await connection.execute(
                sa.select(
                    UsageDaily.requests, UsageDaily.prompt_tokens, UsageDaily.completion_tokens
                ).where(UsageDaily.key_id == sqlite_key.key_id)
            )
        ).one()
        last_used = await connection.scalar(
            sa.select(ApiKey.last_used_at).where(ApiKey.id == sqlite_key.key_id)
        )
    assert tuple(usage) == (4, 3 * 3 + 10, 3 * 4 + 20)
    assert last_used is not None


async def test_prompt_logs_keep_their_json_and_expire(
    sqlite_engine: AsyncEngine, sqlite_key: KeyFixture
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "héllo \x00"}]}
    expired = record(
        sqlite_key,
        prompt_log=PromptLogRecord(request=body, response="ok", expires_at=record().ts),
    )
    writer = AuditWriter(sqlite_engine, writer_settings("sqlite+aiosqlite:///unused"))
    writer.submit(expired)
    await writer.flush()
    async with sqlite_engine.connect() as connection:
        stored = await connection.scalar(sa.select(PromptLog.request))
    assert stored is not None
    assert stored["messages"][0]["content"] == "héllo \ufffd"

    result = await run_retention(sqlite_engine, writer_settings("sqlite+aiosqlite:///unused"))
    assert result.prompt_logs == 1
    assert await count(sqlite_engine, PromptLog) == 0
    await writer.aclose(timeout=5)


async def test_sqlite_refusals_are_content_errors_and_lock_waits_are_not(
    sqlite_engine: AsyncEngine,
) -> None:
    """SQLite has no SQLSTATE: the DB-API class says whether retrying could help."""
    with pytest.raises(sa.exc.IntegrityError) as refused:
        async with sqlite_engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO audit_log (request_id, ts, method, route, status_code,"
                    " outcome, latency_ms) VALUES ('r', '2026-01-01', 'GET', '/', 200,"
                    " 'no-such-outcome', 1.0)"
                )
            )
    assert is_content_error(refused.value)
    locked = sa.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))
    assert not is_content_error(locked)
