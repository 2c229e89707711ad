"""Standalone mode's database: one SQLite file, set up for a server (docs/STANDALONE.md).

Every connection runs in WAL mode (readers never wait for the writer), waits up to
`BUSY_TIMEOUT_MS` for another process's write lock instead of failing at once, and
enforces foreign keys (off in SQLite unless asked for; the schema relies on
`ON DELETE CASCADE`).

Transactions follow the sqlite3 driver: reads run outside a transaction, and a
transaction begins (deferred) right before its first write, so it takes the write lock
with its first statement. That way a reading session never holds a lock or a stale
snapshot, and a write never fails with `SQLITE_BUSY` because another process committed
between a read and the write. Code that must read and write atomically takes the write
lock first, with `BEGIN IMMEDIATE` as its first statement (where Postgres code takes an
advisory lock).
Migrations instead run as one real transaction (`transactional=True`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

BUSY_TIMEOUT_MS = 5000
DIRECTORY_MODE = 0o700  # the file holds key hashes and prompt logs


def sqlite_path(database_url: str) -> Path:
    """The database file a `sqlite+aiosqlite:///…` URL names."""
    database = make_url(database_url).database
    if not database or database == ":memory:":
        raise ValueError("a SQLite database URL must name a file")
    return Path(database)


def ensure_directory(database_url: str) -> None:
    """Create the directory of the database file (owner-only) when it is missing."""
    sqlite_path(database_url).parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)


def create_sqlite_engine(
    database_url: str,
    *,
    foreign_keys: bool = True,
    transactional: bool = False,
    **options: Any,
) -> AsyncEngine:
    """An engine on the SQLite file of `database_url`, creating its directory.

    For migrations: `transactional=True` makes every transaction a real one, begun with
    `BEGIN IMMEDIATE` (DDL included, so a failed migration leaves nothing behind and
    two migrating processes take turns); `foreign_keys=False` because SQLite rebuilds
    a table to alter it, and dropping the old copy would cascade.
    """
    ensure_directory(database_url)
    engine = create_async_engine(database_url, **options)
    pragmas = (
        "PRAGMA journal_mode=WAL",
        f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
        f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}",
        # Durable across a process crash in WAL mode; an OS crash may lose the last
        # commits, never corrupt the file.
        "PRAGMA synchronous=NORMAL",
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        if transactional:
            dbapi_connection.isolation_level = None  # `_begin` below emits BEGIN
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    if transactional:

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
