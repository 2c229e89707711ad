"""Revocation reaches every replica within a second (docs/REFERENCE.md §3.3), two real processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.db.migrate import asyncpg_dsn
from neuronetz_gateway.db.notify import APPLICATION_NAME
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import allow_all_models
from tests.support.factories import KeyFixture, make_key, make_tenant
from tests.support.processes import GatewayProcess, base_environment
from tests.support.stack import start_gateway

TAGS = "/api/tags"


@pytest.fixture(scope="module")
def replicas(database_url: str, double: OllamaDouble) -> Iterator[list[GatewayProcess]]:
    processes = [start_gateway(database_url, double) for _ in range(2)]
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture
async def clients(replicas: list[GatewayProcess]) -> AsyncIterator[list[httpx.AsyncClient]]:
    clients = [httpx.AsyncClient(base_url=p.base_url, timeout=5) for p in replicas]
    yield clients
    for client in clients:
        await client.aclose()


@pytest.fixture
async def key(session: AsyncSession) -> KeyFixture:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    return await make_key(session, tenant.name)


async def _all_refuse_within(
    clients: list[httpx.AsyncClient], key: KeyFixture, started: float, limit: float
) -> list[float]:
    """Seconds from `started` until each replica answered 401 for the key."""
    headers = {"Authorization": f"Bearer {key.secret}"}

    async def until_refused(client: httpx.AsyncClient) -> float:
        while True:
            response = await client.get(TAGS, headers=headers)
            elapsed = time.monotonic() - started
            if response.status_code == 401:
                return elapsed
            assert response.status_code == 200
            assert elapsed < limit, f"still accepted after {elapsed:.2f}s"

    return list(await asyncio.gather(*(until_refused(c) for c in clients)))


async def _warm(clients: list[httpx.AsyncClient], key: KeyFixture) -> None:
    headers = {"Authorization": f"Bearer {key.secret}"}
    for client in clients:
        assert (await client.get(TAGS, headers=headers)).status_code == 200


def _revoke_with_cli(database_url: str, prefix: str) -> None:
    env = {**base_environment(), "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "neuronetz_gateway", "revoke-key", "--prefix", prefix],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


async def test_cli_revocation_reaches_both_replicas_within_1s(
    clients: list[httpx.AsyncClient], key: KeyFixture, database_url: str
) -> None:
    await _warm(clients, key)
    # The CLI's commit happens just before it exits: time from its return is an upper bound.
    await asyncio.to_thread(_revoke_with_cli, database_url, key.prefix)
    started = time.monotonic()
    elapsed = await _all_refuse_within(clients, key, started, 1.0)
    assert max(elapsed) < 1.0


async def test_raw_sql_revocation_reaches_both_replicas_within_1s(
    clients: list[httpx.AsyncClient], key: KeyFixture, database_url: str
) -> None:
    await _warm(clients, key)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute(
            "UPDATE api_keys SET status = 'revoked' WHERE prefix = $1", key.prefix
        )
        started = time.monotonic()
    finally:
        await connection.close()
    elapsed = await _all_refuse_within(clients, key, started, 1.0)
    assert max(elapsed) < 1.0


async def test_reconnect_drops_the_cache(
    replicas: list[GatewayProcess],
    clients: list[httpx.AsyncClient],
    key: KeyFixture,
    database_url: str,
) -> None:
    """A revocation whose notification was lost while LISTEN was down still applies."""
    await _warm(clients, key)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        before = [p.logs().count("change_listener_connected") for p in replicas]
        # Cut every replica's LISTEN connection, then revoke while they are reconnecting:
        # the notification goes to nobody.
        terminated = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = $1",
            APPLICATION_NAME,
        )
        # At least the replicas': other gateways of the test session (the deploy tests'
        # session-scoped one) may listen on this database too.
        assert terminated >= len(replicas)
        await connection.execute(
            "UPDATE api_keys SET status = 'revoked' WHERE prefix = $1", key.prefix
        )
    finally:
        await connection.close()
    for process, count in zip(replicas, before, strict=True):
        reconnected = await asyncio.to_thread(
            process.log.wait_for_count, "change_listener_connected", count + 1, 10.0
        )
        assert reconnected, process.logs()[-2000:]
    elapsed = await _all_refuse_within(clients, key, time.monotonic(), 1.0)
    assert max(elapsed) < 1.0
