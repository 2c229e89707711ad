"""Audit test helpers: records, a tenant with a key, row queries, polling for rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.audit import AuditRecord, AuditWriter, PromptLogRecord
from neuronetz_gateway.config import Settings
from neuronetz_gateway.outcome import Outcome
from tests.conftest import make_settings
from tests.support.factories import KeyFixture, make_key, make_tenant

POLL_DEADLINE_SECONDS = 10.0


def record(
    key: KeyFixture | None = None,
    *,
    request_id: str | None = None,
    ts: datetime | None = None,
    model: str | None = "llama3.1:8b",
    prompt_tokens: int = 10,
    completion_tokens: int = 20,
    outcome: Outcome = Outcome.OK,
    status_code: int = 200,
    prompt_log: PromptLogRecord | None = None,
    **overrides: Any,
) -> AuditRecord:
    """An audit record of `key` (None: a request refused before a key was known)."""
    values: dict[str, Any] = {
        "request_id": request_id or f"req-{uuid.uuid4().hex}",
        "ts": ts or datetime.now(UTC),
        "tenant_id": key.tenant_id if key else None,
        "key_id": key.key_id if key else None,
        "method": "POST",
        "route": "/api/chat",
        "model": model,
        "status_code": status_code,
        "outcome": outcome,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_ms": 12.5,
        "upstream_ms": 10.0,
        "client_ip": "203.0.113.7",
        "user_agent": "pytest/1",
        "prompt_log": prompt_log,
    }
    values.update(overrides)
    return AuditRecord(**values)


@pytest.fixture
async def key(session: AsyncSession) -> KeyFixture:
    tenant = await make_tenant(session)
    return await make_key(session, tenant.name)


def writer_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"audit_flush_interval_ms": 60_000}
    values.update(overrides)
    return make_settings(database_url, **values)


@pytest.fixture
async def writer(engine: AsyncEngine, database_url: str) -> AsyncIterator[AuditWriter]:
    """A writer that is not started: tests call flush() themselves."""
    audit = AuditWriter(engine, writer_settings(database_url))
    yield audit
    await audit.aclose(timeout=5)


async def audit_rows(engine: AsyncEngine, request_ids: list[str]) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            sa.text("SELECT * FROM audit_log WHERE request_id = ANY(:ids) ORDER BY id"),
            {"ids": request_ids},
        )
        return [dict(row) for row in result.mappings()]


async def count_by_request_id(engine: AsyncEngine, request_ids: list[str]) -> dict[str, int]:
    async with engine.connect() as connection:
        result = await connection.execute(
            sa.text(
                "SELECT request_id, count(*) FROM audit_log WHERE request_id = ANY(:ids) "
                "GROUP BY request_id"
            ),
            {"ids": request_ids},
        )
        return {row[0]: row[1] for row in result}


async def usage_of(
    engine: AsyncEngine, key_id: uuid.UUID
) -> dict[tuple[Any, str], tuple[int, ...]]:
    """usage_daily rows of a key as {(day, model): (requests, prompt, completion)}."""
    async with engine.connect() as connection:
        result = await connection.execute(
            sa.text(
                "SELECT day, model, requests, prompt_tokens, completion_tokens "
                "FROM usage_daily WHERE key_id = :key"
            ),
            {"key": key_id},
        )
        return {(row[0], row[1]): (row[2], row[3], row[4]) for row in result}


async def eventually[T](
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    deadline: float = POLL_DEADLINE_SECONDS,
) -> T:
    """Poll `probe` until `done(result)`; fail after `deadline` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        value = await probe()
        if done(value):
            return value
        if loop.time() > end:
            pytest.fail(f"condition not met within {deadline}s; last value: {value!r}")
        await asyncio.sleep(0.02)
