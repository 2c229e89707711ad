"""Replicas starting together on an empty database migrate it exactly once
(docs/REFERENCE.md §13): the upgrade runs under a Postgres advisory lock."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from neuronetz_gateway.db import migrate
from tests.support.databases import REDIS_URL, drop_database, fresh_database_url
from tests.support.processes import GatewayProcess, base_environment

REPLICAS = 4


@pytest.fixture
def empty_url() -> Iterator[str]:
    url = fresh_database_url("once")
    yield url
    drop_database(url)


async def _lock_waiters(connection: asyncpg.Connection, count: int, timeout: float) -> None:
    """Return once `count` other sessions wait for an advisory lock on this database."""
    async with asyncio.timeout(timeout):
        while (
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            )
            < count
        ):
            await asyncio.sleep(0.05)


async def test_four_replicas_starting_at_once_migrate_exactly_once(empty_url: str) -> None:
    await migrate.ensure_postgres_database(empty_url)  # created, no tables
    holder = await asyncpg.connect(migrate.asyncpg_dsn(empty_url))
    replicas = [
        GatewayProcess(
            {
                "DATABASE_URL": empty_url,
                "REDIS_URL": REDIS_URL,
                "OLLAMA_BASE_URL": "http://127.0.0.1:9",
                "MODEL_DISCOVERY_ENABLED": "false",
            }
        )
        for _ in range(REPLICAS)
    ]
    try:
        # The test holds the migration lock until all four queue behind it, so that they
        # truly meet at the lock, then lets them go at the same moment.
        await holder.execute("SELECT pg_advisory_lock($1)", migrate.MIGRATION_LOCK_ID)
        for replica in replicas:
            replica.launch()
        await _lock_waiters(holder, REPLICAS, timeout=90)
        await holder.execute("SELECT pg_advisory_unlock($1)", migrate.MIGRATION_LOCK_ID)
        for replica in replicas:
            await asyncio.to_thread(replica.wait_until_started, 90)
        migrated = [r for r in replicas if '"schema_migrated"' in r.logs()]
        current = [r for r in replicas if '"schema_current"' in r.logs()]
        assert (len(migrated), len(current)) == (1, REPLICAS - 1)
        assert await holder.fetchval("SELECT version_num FROM alembic_version") == (
            migrate.head_revision()
        )
        async with httpx.AsyncClient(timeout=5) as client:
            for replica in replicas:
                assert (await client.get(f"{replica.base_url}/healthz")).status_code == 200
    finally:
        await holder.close()
        for replica in replicas:
            replica.stop()


def test_migrate_commands_racing_on_a_missing_database(empty_url: str) -> None:
    """No coordination at all: four `migrate` at once, the database not even created.
    Every one succeeds (creating the database races too), one applies the revisions."""
    env = {**base_environment(), "DATABASE_URL": empty_url}
    command = [sys.executable, "-m", "neuronetz_gateway", "migrate", "--json"]
    processes = [
        subprocess.Popen(command, env=env, cwd="/", stdout=subprocess.PIPE, text=True)
        for _ in range(REPLICAS)
    ]
    reports = []
    for process in processes:
        stdout, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        reports.append(json.loads(stdout))
    applied = sorted(len(report["applied"]) for report in reports)
    assert applied[:-1] == [0] * (REPLICAS - 1)
    assert applied[-1] >= 4
    assert {report["revision"] for report in reports} == {migrate.head_revision()}
