"""The background audit writer: buffers records in memory, writes them in batches.

The hot path only appends to a list (`submit`); a background task writes batches every
`AUDIT_FLUSH_INTERVAL_MS`, or as soon as a full batch is waiting. While Postgres is
unreachable the writer keeps the records and retries with back-off; `accepting` turns
False once `AUDIT_BUFFER_MAX_ROWS` wait, and the pipeline then refuses requests with 503
rather than serve them unaudited (docs/REFERENCE.md §4.10). Each batch is written exactly once, also
when a COMMIT's acknowledgement is lost (see `audit.batch`, docs/AUDIT.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import deque
from collections.abc import Iterable
from datetime import date

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.audit.batch import Batch, BatchRejected, sqlstate, write_batch
from neuronetz_gateway.audit.records import AuditRecord
from neuronetz_gateway.audit.rows import utc
from neuronetz_gateway.background import BackgroundTask
from neuronetz_gateway.config import Settings

log = structlog.get_logger(__name__)

BATCH_ROWS = 1000
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 10.0
WRITE_TIMEOUT_SECONDS = 30.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0
# Past AUDIT_BUFFER_MAX_ROWS the pipeline serves nothing, but the 503s it answers are
# audited too; beyond this multiple those records are dropped (and counted) so a flood
# during an outage cannot exhaust memory.
HARD_LIMIT_FACTOR = 2


class AuditWriter(BackgroundTask):
    """Batched, exactly-once writer of `audit_log`, `usage_daily` and `prompt_logs` rows."""

    name = "audit-writer"

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        *,
        batch_rows: int = BATCH_ROWS,
        max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
        write_timeout_seconds: float = WRITE_TIMEOUT_SECONDS,
    ) -> None:
        self._engine = engine
        self._interval = settings.audit_flush_interval_ms / 1000
        self._max_rows = settings.audit_buffer_max_rows
        self._hard_limit = HARD_LIMIT_FACTOR * settings.audit_buffer_max_rows
        self._batch_rows = batch_rows
        self._max_backoff = max_backoff_seconds
        self._write_timeout = write_timeout_seconds
        self._pending: list[AuditRecord] = []
        self._batches: deque[Batch] = deque()
        self._depth = 0
        self._dropped = 0
        self._rejected = 0
        self._failures = 0
        self._closed = False
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._reported_full = False
        self._reported_dropped = 0

    # -- the hot path ------------------------------------------------------------------

    def submit(self, record: AuditRecord) -> None:
        """Queue `record` for writing. O(1), no I/O, never raises, never blocks."""
        if self._closed or self._depth >= self._hard_limit:
            self._dropped += 1
            return
        self._pending.append(record)
        self._depth += 1
        if len(self._pending) >= self._batch_rows:
            self._wake.set()

    @property
    def accepting(self) -> bool:
        """False while `AUDIT_BUFFER_MAX_ROWS` or more rows wait: serve nothing then."""
        return not self._closed and self._depth < self._max_rows

    @property
    def capacity(self) -> int:
        """`AUDIT_BUFFER_MAX_ROWS`: the depth at which `accepting` turns False."""
        return self._max_rows

    @property
    def depth(self) -> int:
        """Records submitted and not yet committed."""
        return self._depth

    @property
    def dropped(self) -> int:
        """Records refused by `submit` (writer closed, or buffer past its hard limit)."""
        return self._dropped

    @property
    def rejected(self) -> int:
        """Records Postgres refused to store even alone; logged and skipped."""
        return self._rejected

    def pending_usage(
        self, tenant_id: uuid.UUID, key_id: uuid.UUID | None, since: date | None
    ) -> int:
        """Tokens of buffered records of the tenant (and key, if given) from `since` (UTC day).

        Records leave the buffer only once their COMMIT is acknowledged, so a usage sum
        from Postgres plus this never misses tokens (it may count a batch twice in the
        instant between commit and acknowledgement: the safe direction for budgets).
        """
        total = _usage_of(self._pending, tenant_id, key_id, since)
        for batch in self._batches:
            total += _usage_of(batch.records, tenant_id, key_id, since)
        return total

    # -- lifecycle ---------------------------------------------------------------------

    async def flush(self) -> None:
        """Write everything buffered now; raises if Postgres fails (records stay buffered)."""
        async with self._lock:
            self._form_batches()
            while self._batches:
                await self._write_head()

    async def aclose(self, timeout: float = SHUTDOWN_TIMEOUT_SECONDS) -> None:  # noqa: ASYNC109 - bounds retries, not one await
        """Stop accepting, flush what is buffered (retrying until `timeout`), stop the task."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._closed = True
        self._stop.set()
        self._wake.set()
        # Cancelling is safe even mid-COMMIT: the batch stays buffered with its id.
        await self.stop_task(grace=timeout)
        attempt = 0
        while self._depth and (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    await self.flush()
            except Exception as error:  # noqa: BLE001 - retried until the deadline
                attempt += 1
                self._log_failure(error, attempt)
                await asyncio.sleep(min(self._backoff(attempt), max(0.0, deadline - loop.time())))
        if self._depth:
            log.error("audit_rows_lost_on_shutdown", rows=self._depth)
        self._report_state()

    # -- the background task -------------------------------------------------------------

    async def run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                await self.flush()
            except Exception as error:  # noqa: BLE001 - the writer must outlive any failure
                self._failures += 1
                delay = self._log_failure(error, self._failures)
                self._report_state()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                continue
            if self._failures:
                log.info("audit_flush_recovered", failed_attempts=self._failures)
                self._failures = 0
            self._report_state()

    def _form_batches(self) -> None:
        """Move pending records into batches, topping up a batch not yet attempted.

        During an outage this keeps the backlog in full batches rather than one small
        batch per retry, so the catch-up afterwards takes few transactions.
        """
        pending, self._pending = self._pending, []
        size = self._batch_rows
        tail = self._batches[-1] if self._batches else None
        if tail is not None and not tail.attempted and len(tail.records) < size:
            room = size - len(tail.records)
            tail.records.extend(pending[:room])
            pending = pending[room:]
        self._batches.extend(Batch(pending[i : i + size]) for i in range(0, len(pending), size))

    async def _write_head(self) -> None:
        batch = self._batches[0]
        batch.attempted = True
        try:
            async with asyncio.timeout(self._write_timeout):
                written = await write_batch(self._engine, batch)
        except BatchRejected as error:
            self._isolate(batch, error)
            return
        self._batches.popleft()
        self._depth -= len(batch.records)
        if not written:
            log.info("audit_batch_already_written", rows=len(batch.records))

    def _isolate(self, batch: Batch, error: BatchRejected) -> None:
        """Split a refused batch so the one bad record is found and skipped, not the rest.

        New ids for the halves are safe: the refusal came before COMMIT, and the marker
        claim precedes every row, so no attempt of this batch ever committed.
        """
        self._batches.popleft()
        if len(batch.records) > 1:
            middle = len(batch.records) // 2
            self._batches.appendleft(Batch(batch.records[middle:]))
            self._batches.appendleft(Batch(batch.records[:middle]))
            return
        self._depth -= 1
        self._rejected += 1
        log.error(
            "audit_record_rejected",
            request_id=batch.records[0].request_id,
            error=str(error),
            sqlstate=sqlstate(error.__cause__) if error.__cause__ else None,
        )

    def _backoff(self, attempt: int) -> float:
        delay = min(self._max_backoff, FIRST_BACKOFF_SECONDS * 2.0 ** min(attempt - 1, 16))
        # Jitter, not a secret: the standard generator is right here.
        jitter = random.uniform(0.5, 1.0)  # noqa: S311  # nosec B311
        return delay * jitter

    def _log_failure(self, error: Exception, attempt: int) -> float:
        """Log a failed flush (error class and counts only: messages may quote rows)."""
        delay = self._backoff(attempt)
        log.warning(
            "audit_flush_failed",
            error=type(error).__name__,
            sqlstate=sqlstate(error),
            attempt=attempt,
            rows_buffered=self._depth,
            retry_in_seconds=round(delay, 2),
        )
        return delay

    def _report_state(self) -> None:
        """Log buffer-full transitions and drops from the background, never from `submit`."""
        full = self._depth >= self._max_rows
        if full != self._reported_full:
            self._reported_full = full
            if full:
                log.error("audit_buffer_full", rows_buffered=self._depth, max_rows=self._max_rows)
            else:
                log.info("audit_buffer_accepting", rows_buffered=self._depth)
        if self._dropped > self._reported_dropped:
            log.error(
                "audit_records_dropped",
                count=self._dropped - self._reported_dropped,
                total=self._dropped,
            )
            self._reported_dropped = self._dropped


def _usage_of(
    records: Iterable[AuditRecord],
    tenant_id: uuid.UUID,
    key_id: uuid.UUID | None,
    since: date | None,
) -> int:
    total = 0
    for record in records:
        if record.tenant_id != tenant_id or record.key_id is None:
            continue
        if key_id is not None and record.key_id != key_id:
            continue
        if since is not None and utc(record.ts).date() < since:
            continue
        total += record.tokens
    return total
