"""Throw-away Postgres databases and Redis namespaces for tests.

Every test session creates its own database (`nzgw_test_<random>`), so runs never see
each other's rows and the suite can run twice in a row.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from neuronetz_gateway.db import migrate
from neuronetz_gateway.db.engine import create_engine

ADMIN_DATABASE_URL = os.environ.get(
    "NZ_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("NZ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def fresh_database_url(label: str = "test") -> str:
    """A URL naming a database that does not exist yet (created on first migrate)."""
    name = f"nzgw_{label}_{uuid.uuid4().hex[:12]}"
    return make_url(ADMIN_DATABASE_URL).set(database=name).render_as_string(hide_password=False)


def create_migrated_database(label: str = "test") -> str:
    """Create a fresh database at the latest revision and return its URL."""
    url = fresh_database_url(label)
    migrate.upgrade(url)
    return url


async def _drop(url: str) -> None:
    target = make_url(url)
    admin = await asyncpg.connect(migrate.asyncpg_dsn(ADMIN_DATABASE_URL))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    finally:
        await admin.close()


def drop_database(url: str) -> None:
    """Drop the database named in `url`, disconnecting whoever still uses it."""
    asyncio.run(_drop(url))


def run_sql(url: str, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run one statement in its own transaction (Postgres or SQLite); its rows, if any."""

    async def go() -> list[tuple[Any, ...]]:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(sa.text(statement), params)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(go())
