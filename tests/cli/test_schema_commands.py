"""`migrate` reports what it applied; `check-schema` tells whether this release may serve
(docs/REFERENCE.md §13: the migration Job migrates, pods wait for it)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator

import asyncpg
import pytest

from neuronetz_gateway.db import migrate
from tests.cli.test_foundation_commands import ARGON2_CHEAP, assert_one_line_error, cli
from tests.support.databases import drop_database, fresh_database_url
from tests.support.processes import base_environment

ALL_REVISIONS = ["0001_initial", "0002_audit_batches", "0003_models_modified_at"]


@pytest.fixture
def scratch_url() -> Iterator[str]:
    url = fresh_database_url("schema")
    yield url
    drop_database(url)


def _set_revision(url: str, revision: str) -> None:
    async def work() -> None:
        connection = await asyncpg.connect(migrate.asyncpg_dsn(url))
        try:
            await connection.execute("UPDATE alembic_version SET version_num = $1", revision)
        finally:
            await connection.close()

    asyncio.run(work())


def test_migrate_reports_the_steps_it_applied_then_none(scratch_url: str) -> None:
    first = cli(scratch_url, "migrate", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    head = migrate.head_revision()
    assert report["revision"] == head
    assert report["applied"][: len(ALL_REVISIONS)] == ALL_REVISIONS
    assert report["applied"][-1] == head
    again = cli(scratch_url, "migrate")
    assert again.stdout.strip() == f"database at revision {head} (nothing to apply)"


def test_check_schema_ready_at_head(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    result = cli(scratch_url, "check-schema", "--json")
    assert result.returncode == 0, result.stderr
    head = migrate.head_revision()
    assert json.loads(result.stdout) == {"revision": head, "head": head, "ready": True}


def test_check_schema_refuses_a_schema_behind_this_release(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0002_audit_batches")
    result = cli(scratch_url, "check-schema", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["ready"] is False
    assert migrate.current_revision(scratch_url) == "0002_audit_batches", "it never migrates"


def test_check_schema_accepts_a_newer_release_schema(scratch_url: str) -> None:
    """After a rollback of the code, the schema is at a revision this release does not know."""
    migrate.upgrade(scratch_url)
    _set_revision(scratch_url, "0099_from_a_newer_release")
    assert cli(scratch_url, "check-schema").returncode == 0


def test_check_schema_on_a_missing_database_is_one_line(scratch_url: str) -> None:
    assert_one_line_error(cli(scratch_url, "check-schema"), "database unreachable")


async def _blocked_reader(url: str, timeout: float = 30.0) -> None:
    """Return once a session on `url` waits for a lock (the child's revision read)."""
    connection = await asyncpg.connect(migrate.asyncpg_dsn(url))
    try:
        async with asyncio.timeout(timeout):
            while not await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ):
                await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def test_check_schema_waits_for_the_migration(scratch_url: str) -> None:
    """The init container's case: it reads a schema behind this release, waits, and passes
    once the migration Job has run."""
    await asyncio.to_thread(migrate.upgrade, scratch_url, "0002_audit_batches")
    holder = await asyncpg.connect(migrate.asyncpg_dsn(scratch_url))
    transaction = holder.transaction()
    await transaction.start()
    # The child's first read of the revision blocks here, so it sees 0002 for certain.
    await holder.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
    waiting = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "neuronetz_gateway", "check-schema", "--wait", "60", "--json"),
        env={**base_environment(), "DATABASE_URL": scratch_url, **ARGON2_CHEAP},
        cwd="/",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _blocked_reader(scratch_url)
        await transaction.commit()
        await asyncio.to_thread(migrate.upgrade, scratch_url)
        stdout, stderr = await asyncio.wait_for(waiting.communicate(), 90)
    finally:
        await holder.close()
        if waiting.returncode is None:
            waiting.kill()
    assert waiting.returncode == 0, stderr.decode()
    assert json.loads(stdout)["ready"] is True
