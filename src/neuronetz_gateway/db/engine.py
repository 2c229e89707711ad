"""The async SQLAlchemy engine, configured for the gateway's background work."""

from __future__ import annotations

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
            connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
        )
    return create_async_engine(database_url)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (the CLI prints them)."""
    return async_sessionmaker(engine, expire_on_commit=False)
