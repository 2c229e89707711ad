"""The change feed of standalone mode (docs/REFERENCE.md §3.3 without Postgres): poll SQLite.

SQLite has no LISTEN/NOTIFY. `PRAGMA data_version` on one connection changes whenever
another connection commits, and costs no I/O, so `SqlitePoller` reads it every
`interval_seconds` (200 ms: well inside the one second revocation may take). When it
changed, a snapshot of the configuration tables is diffed with the previous one
(db/snapshot.py) and the same `ChangeHandlers` as `ChangeListener`'s are called with
what the Postgres triggers would have sent. The gateway's own writes (audit batches,
`last_used_at`, discovery's `last_seen_at`) change the file too; they only cost a
snapshot, because bookkeeping columns are not part of it.

Like the listener, the poller calls `on_reconnect` (drop every cache) whenever it
(re)starts, after its first snapshot, so no change can fall between the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiosqlite
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.db.notify import ChangeFeed, ChangeHandlers
from neuronetz_gateway.db.snapshot import Changes, diff, take_snapshot
from neuronetz_gateway.db.sqlite import BUSY_TIMEOUT_MS, sqlite_path

log = structlog.get_logger(__name__)

POLL_INTERVAL_SECONDS = 0.2


class SqlitePoller(ChangeFeed):
    """Calls `handlers` for changes other processes commit to the SQLite file."""

    name = "change-poller"
    failure_event = "change_poller_failed"

    def __init__(
        self,
        engine: AsyncEngine,
        handlers: ChangeHandlers,
        *,
        on_models_changed: Callable[[], Awaitable[None]] | None = None,
        interval_seconds: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        super().__init__(first_backoff=interval_seconds)
        self._engine = engine
        self._path = sqlite_path(engine.url.render_as_string(hide_password=False))
        self._handlers = handlers
        self._on_models_changed = on_models_changed
        self._interval = interval_seconds

    async def follow(self) -> None:
        async with aiosqlite.connect(self._path, timeout=BUSY_TIMEOUT_MS / 1000) as connection:
            # Version first, snapshot second: a commit in between shows in both, which
            # costs one empty diff; the other order could miss it.
            version = await _data_version(connection)
            snapshot = await take_snapshot(self._engine)
            await self._handlers.on_reconnect()
            self.connected.set()
            log.info("change_poller_started", interval_ms=round(self._interval * 1000))
            while True:
                await asyncio.sleep(self._interval)
                current = await _data_version(connection)
                if current == version:
                    continue
                version = current
                fresh = await take_snapshot(self._engine)
                await self._dispatch(diff(snapshot, fresh))
                snapshot = fresh

    async def _dispatch(self, changes: Changes) -> None:
        for prefix in changes.revoked_prefixes:
            self._handlers.on_key_revoked(prefix)
        for change in changes.config:
            self._handlers.on_config_changed(change)
        if changes.models_changed and self._on_models_changed is not None:
            await self._on_models_changed()


async def _data_version(connection: aiosqlite.Connection) -> int:
    async with connection.execute("PRAGMA data_version") as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise RuntimeError("PRAGMA data_version returned nothing")
    return int(row[0])
