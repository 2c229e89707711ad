"""Data lifecycle: expired prompt logs, audit rows past retention, old batch markers.

Deletes run in bounded batches, each its own short transaction, so a large backlog never
holds one long lock or one huge transaction. `FOR UPDATE SKIP LOCKED` lets several
replicas purge at the same time without waiting on each other's rows (SQLite ignores it,
and has one writer anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.background import BackgroundTask
from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.tables import AuditBatch, AuditLog, Base, PromptLog

log = structlog.get_logger(__name__)

PURGE_BATCH_ROWS = 5000
RETENTION_INTERVAL_SECONDS = 3600.0
# A marker only matters while its batch may still be retried, i.e. while a replica that
# lost a COMMIT acknowledgement cannot reach Postgres; two days is far past that.
AUDIT_BATCH_MARKER_RETENTION = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """Rows deleted by one retention run."""

    prompt_logs: int
    audit_rows: int
    audit_batches: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def delete_in_batches(
    engine: AsyncEngine,
    table: sa.Table,
    condition: sa.ColumnElement[bool],
    batch_size: int = PURGE_BATCH_ROWS,
) -> int:
    """Delete the rows of `table` matching `condition`, at most `batch_size` per transaction."""
    id_column = table.primary_key.columns.values()[0]
    total = 0
    while True:
        chosen = (
            sa.select(id_column)
            .where(condition)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with engine.begin() as connection:
            result = await connection.execute(sa.delete(table).where(id_column.in_(chosen)))
        total += result.rowcount
        if result.rowcount < batch_size:
            return total


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


async def purge_expired_prompt_logs(
    engine: AsyncEngine, now: datetime | None = None, *, batch_size: int = PURGE_BATCH_ROWS
) -> int:
    """Delete prompt logs whose `expires_at` is at or before `now`; returns the count."""
    table = Base.metadata.tables[PromptLog.__tablename__]
    return await delete_in_batches(engine, table, table.c.expires_at <= _now(now), batch_size)


async def purge_old_audit_rows(
    engine: AsyncEngine,
    retention_days: int,
    batch_size: int = PURGE_BATCH_ROWS,
    now: datetime | None = None,
) -> int:
    """Delete audit rows older than `retention_days` days; returns the count."""
    table = Base.metadata.tables[AuditLog.__tablename__]
    cutoff = _now(now) - timedelta(days=retention_days)
    return await delete_in_batches(engine, table, table.c.ts < cutoff, batch_size)


async def purge_audit_batch_markers(
    engine: AsyncEngine,
    now: datetime | None = None,
    *,
    older_than: timedelta = AUDIT_BATCH_MARKER_RETENTION,
    batch_size: int = PURGE_BATCH_ROWS,
) -> int:
    """Delete exactly-once markers of batches written more than `older_than` ago."""
    table = Base.metadata.tables[AuditBatch.__tablename__]
    cutoff = _now(now) - older_than
    return await delete_in_batches(engine, table, table.c.written_at < cutoff, batch_size)


async def run_retention(
    engine: AsyncEngine, settings: Settings, now: datetime | None = None
) -> RetentionResult:
    """One retention run: prompt logs past expiry, audit rows past AUDIT_RETENTION_DAYS."""
    now = _now(now)
    return RetentionResult(
        prompt_logs=await purge_expired_prompt_logs(engine, now),
        audit_rows=await purge_old_audit_rows(engine, settings.audit_retention_days, now=now),
        audit_batches=await purge_audit_batch_markers(engine, now),
    )


class RetentionTask(BackgroundTask):
    """Runs `run_retention` at start and then every `interval_seconds` in the background."""

    name = "retention"

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        *,
        interval_seconds: float = RETENTION_INTERVAL_SECONDS,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._interval = interval_seconds
        self._stop = asyncio.Event()

    async def aclose(self, grace_seconds: float = 5.0) -> None:
        """Stop; a purge in progress gets `grace_seconds`, then its batch rolls back."""
        self._stop.set()
        await self.stop_task(grace=grace_seconds)

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                result = await run_retention(self._engine, self._settings)
            except Exception as error:  # noqa: BLE001 - retried at the next interval
                log.warning(
                    "retention_failed",
                    error=type(error).__name__,
                    retry_in_seconds=self._interval,
                )
            else:
                log.info("retention_purged", **result.as_dict())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._stop.wait()
