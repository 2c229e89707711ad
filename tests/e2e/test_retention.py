"""A running gateway purges expired prompt logs and audit rows past retention on its own.

A database of its own: the purge deletes every old row, whoever wrote it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.db.engine import create_engine
from tests.doubles.ollama import OllamaDouble
from tests.support.databases import create_migrated_database, drop_database
from tests.support.processes import GatewayProcess
from tests.support.stack import gateway_env

RETENTION_DAYS = 30


@pytest.fixture(scope="module")
def own_database() -> Iterator[str]:
    url = create_migrated_database("retention_e2e")
    yield url
    drop_database(url)


@pytest.fixture
async def own_engine(own_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(own_database)
    yield engine
    await engine.dispose()


async def _seed(engine: AsyncEngine, now: datetime) -> None:
    old = now - timedelta(days=RETENTION_DAYS, hours=1)
    audit = [(f"old-{i}", old - timedelta(days=i)) for i in range(7)]
    audit += [(f"new-{i}", now - timedelta(days=RETENTION_DAYS - 1)) for i in range(3)]
    logs = [(f"expired-{i}", now - timedelta(minutes=i + 1)) for i in range(4)]
    logs += [(f"live-{i}", now + timedelta(hours=1)) for i in range(2)]
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(
                "INSERT INTO audit_log (request_id, ts, method, route, status_code, outcome, "
                "latency_ms) VALUES (:id, :ts, 'POST', '/api/chat', 200, 'ok', 1.0)"
            ),
            [{"id": request_id, "ts": ts} for request_id, ts in audit],
        )
        await connection.execute(
            sa.text(
                "INSERT INTO prompt_logs (request_id, tenant_id, key_id, ts, expires_at, "
                "request, response) VALUES (:id, :tenant, :key, :ts, :expires, '{}', 'r')"
            ),
            [
                {
                    "id": request_id,
                    "tenant": uuid.uuid4(),
                    "key": uuid.uuid4(),
                    "ts": expires - timedelta(hours=24),
                    "expires": expires,
                }
                for request_id, expires in logs
            ],
        )


async def _ids(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as connection:
        result = await connection.execute(sa.text(f"SELECT request_id FROM {table}"))
        return {row[0] for row in result}


async def test_gateway_purges_at_start(
    own_database: str, own_engine: AsyncEngine, double: OllamaDouble
) -> None:
    await _seed(own_engine, datetime.now(UTC))
    env = gateway_env(own_database, double, AUDIT_RETENTION_DAYS=str(RETENTION_DAYS))
    with GatewayProcess(env) as gateway:
        line = gateway.wait_for_log("retention_purged", timeout=10)
    assert line is not None
    assert '"prompt_logs":4' in line
    assert '"audit_rows":7' in line
    assert await _ids(own_engine, "audit_log") == {f"new-{i}" for i in range(3)}
    assert await _ids(own_engine, "prompt_logs") == {f"live-{i}" for i in range(2)}
