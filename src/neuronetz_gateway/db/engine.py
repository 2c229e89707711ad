"""The async SQLAlchemy engine, configured for the gateway's background work.

Postgres connections work through PgBouncer in transaction pooling mode
(docs/REFERENCE.md §13): no prepared statement outlives its transaction. asyncpg's
statement cache is off, and SQLAlchemy prepares every statement unnamed, which asyncpg
then parses again together with its execution (Parse, Bind, Execute in one message),
so a statement never meets a server connection that has not seen it. The cost, one
extra parse per query, falls on background work only: the hot path runs no query.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from neuronetz_gateway.db.sqlite import create_sqlite_engine

# Postgres work is background work (audit batches, cache misses, discovery): a small pool.
POOL_SIZE = 5
MAX_OVERFLOW = 5
CONNECT_TIMEOUT_SECONDS = 5.0


def _unnamed() -> str:
    return ""


def postgres_connect_args() -> dict[str, Any]:
    """asyncpg/SQLAlchemy connection options for every engine on Postgres."""
    return {
        "timeout": CONNECT_TIMEOUT_SECONDS,
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unnamed,
    }


async def connect_postgres(dsn: str) -> asyncpg.Connection:
    """A plain asyncpg connection with the same PgBouncer-safe options (no statement cache)."""
    return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS, statement_cache_size=0)


def create_engine(database_url: str) -> AsyncEngine:
    """An engine for `database_url`; connects lazily, never at creation."""
    if database_url.startswith("sqlite"):
        return create_sqlite_engine(database_url)
    if database_url.startswith("postgresql"):
        return create_async_engine(
            database_url,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_pre_ping=True,
            connect_args=postgres_connect_args(),
        )
    return create_async_engine(database_url)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (the CLI prints them)."""
    return async_sessionmaker(engine, expire_on_commit=False)
