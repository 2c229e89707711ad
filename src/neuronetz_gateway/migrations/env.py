"""Alembic environment: async engine, one advisory lock so replicas migrate one at a time.

The lock is transaction-scoped and taken before Alembic reads the current revision, so
of several processes upgrading an empty database at once exactly one migrates; the
others wait, then find the schema at head. It works through PgBouncer in transaction
pooling mode too (the whole upgrade is one transaction, no prepared statement outlives
it). Each applied step is recorded
in `config.attributes["applied"]` for the caller to report.

On SQLite the whole run is one `BEGIN IMMEDIATE` transaction (db/sqlite.py), which
serializes concurrent migrators the way the advisory lock does on Postgres. Foreign keys
are off while migrating (batch mode rebuilds tables) and checked before the commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from neuronetz_gateway.db.engine import postgres_connect_args
from neuronetz_gateway.db.migrate import MIGRATION_LOCK_ID
from neuronetz_gateway.db.sqlite import create_sqlite_engine
from neuronetz_gateway.db.tables import Base


def _record_step(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    if step.is_upgrade and step.up_revision_id is not None:
        context.config.attributes.setdefault("applied", []).append(step.up_revision_id)


def _run(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=is_sqlite,
        # SQLite's DDL is transactional; Alembic assumes otherwise by default.
        transactional_ddl=True if is_sqlite else None,
        on_version_apply=_record_step,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()
        if is_sqlite:
            _check_foreign_keys(connection)


def _check_foreign_keys(connection: Connection) -> None:
    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if violations:
        raise RuntimeError(f"migration left {len(violations)} rows violating foreign keys")


async def _run_async(url: str) -> None:
    if url.startswith("sqlite"):
        engine = create_sqlite_engine(
            url, foreign_keys=False, transactional=True, poolclass=NullPool
        )
    else:
        engine = create_async_engine(url, poolclass=NullPool, connect_args=postgres_connect_args())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def main() -> None:
    existing = context.config.attributes.get("connection")
    if existing is not None:
        _run(existing)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not configured")
    asyncio.run(_run_async(url))


main()
