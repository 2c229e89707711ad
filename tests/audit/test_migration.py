"""Migration 0002_audit_batches: upgrade, downgrade and upgrade again on a fresh database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from neuronetz_gateway.db import migrate
from tests.support.databases import drop_database, fresh_database_url


@pytest.fixture
def scratch_url() -> Iterator[str]:
    url = fresh_database_url("mig2")
    yield url
    drop_database(url)


def has_marker_table(url: str) -> bool:
    async def check() -> bool:
        connection = await asyncpg.connect(migrate.asyncpg_dsn(url))
        try:
            return bool(
                await connection.fetchval("SELECT to_regclass('audit_batches') IS NOT NULL")
            )
        finally:
            await connection.close()

    return asyncio.run(check())


def test_0002_round_trip(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0002_audit_batches")
    assert migrate.current_revision(scratch_url) == "0002_audit_batches"
    assert has_marker_table(scratch_url)

    migrate.downgrade(scratch_url, "0001_initial")
    assert migrate.current_revision(scratch_url) == "0001_initial"
    assert not has_marker_table(scratch_url)

    migrate.upgrade(scratch_url, "0002_audit_batches")
    assert migrate.current_revision(scratch_url) == "0002_audit_batches"
    assert has_marker_table(scratch_url)
