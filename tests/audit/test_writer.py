"""The audit writer against real Postgres: rows, usage rollup, prompt logs, lifecycle."""

from __future__ import annotations

import dataclasses
import ipaddress
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.audit import AuditWriter, PromptLogRecord
from neuronetz_gateway.outcome import Outcome
from tests.audit.conftest import (
    audit_rows,
    count_by_request_id,
    eventually,
    record,
    usage_of,
    writer_settings,
)
from tests.support.factories import KeyFixture


async def test_flush_writes_one_audit_row_per_record_with_its_fields(
    writer: AuditWriter, engine: AsyncEngine, key: KeyFixture
) -> None:
    ts = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
    records = [record(key, ts=ts + timedelta(seconds=i), prompt_tokens=i) for i in range(5)]
    for item in records:
        writer.submit(item)
    assert writer.depth == 5

    await writer.flush()

    assert writer.depth == 0
    rows = await audit_rows(engine, [r.request_id for r in records])
    assert [row["request_id"] for row in rows] == [r.request_id for r in records]
    first = rows[0]
    assert first["ts"] == ts
    assert first["tenant_id"] == key.tenant_id
    assert first["key_id"] == key.key_id
    assert (first["method"], first["route"], first["model"]) == ("POST", "/api/chat", "llama3.1:8b")
    assert (first["status_code"], first["outcome"]) == (200, "ok")
    assert (first["prompt_tokens"], first["completion_tokens"]) == (0, 20)
    assert (first["latency_ms"], first["upstream_ms"]) == (12.5, 10.0)
    assert first["client_ip"] == ipaddress.ip_address("203.0.113.7")
    assert first["user_agent"] == "pytest/1"


async def test_usage_daily_sums_per_day_tenant_key_and_model(
    writer: AuditWriter, engine: AsyncEngine, key: KeyFixture
) -> None:
    today = datetime(2026, 11, 20, 23, 59, tzinfo=UTC)
    yesterday = today - timedelta(days=1)
    writer.submit(record(key, ts=today, prompt_tokens=1, completion_tokens=2))
    writer.submit(record(key, ts=today, prompt_tokens=10, completion_tokens=20))
    writer.submit(record(key, ts=today, prompt_tokens=100, completion_tokens=200))
    writer.submit(record(key, ts=today, model=None, prompt_tokens=0, completion_tokens=0))
    writer.submit(record(key, ts=yesterday, prompt_tokens=5, completion_tokens=6))
    await writer.flush()

    assert await usage_of(engine, key.key_id) == {
        (today.date(), "llama3.1:8b"): (3, 111, 222),
        (today.date(), ""): (1, 0, 0),
        (yesterday.date(), "llama3.1:8b"): (1, 5, 6),
    }

    # A later batch adds to the same rows, and a new day gets its own row.
    tomorrow = today + timedelta(minutes=1)
    writer.submit(record(key, ts=today, prompt_tokens=1000, completion_tokens=2000))
    writer.submit(record(key, ts=tomorrow, prompt_tokens=7, completion_tokens=8))
    await writer.flush()

    usage = await usage_of(engine, key.key_id)
    assert usage[(today.date(), "llama3.1:8b")] == (4, 1111, 2222)
    assert usage[(tomorrow.date(), "llama3.1:8b")] == (1, 7, 8)


async def test_refused_requests_are_audited_but_not_usage(
    writer: AuditWriter, engine: AsyncEngine
) -> None:
    refused = record(None, outcome=Outcome.AUTH_FAILED, status_code=401, prompt_tokens=0)
    writer.submit(refused)
    await writer.flush()

    rows = await audit_rows(engine, [refused.request_id])
    assert len(rows) == 1
    assert (rows[0]["tenant_id"], rows[0]["key_id"], rows[0]["outcome"]) == (
        None,
        None,
        "auth_failed",
    )
    async with engine.connect() as connection:
        nameless = await connection.scalar(
            sa.text("SELECT count(*) FROM usage_daily WHERE tenant_id IS NULL OR key_id IS NULL")
        )
    assert nameless == 0


async def test_prompt_logs_are_written_with_their_expiry(
    writer: AuditWriter, engine: AsyncEngine, key: KeyFixture
) -> None:
    expires = datetime(2026, 11, 21, 12, tzinfo=UTC)
    body = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]}
    logged = record(key, prompt_log=PromptLogRecord(body, "Hello!", expires))
    unlogged = record(key)
    writer.submit(logged)
    writer.submit(unlogged)
    await writer.flush()

    async with engine.connect() as connection:
        result = await connection.execute(
            sa.text(
                "SELECT request_id, tenant_id, key_id, request, response, expires_at "
                "FROM prompt_logs WHERE request_id = ANY(:ids)"
            ),
            {"ids": [logged.request_id, unlogged.request_id]},
        )
        rows = [dict(row) for row in result.mappings()]
    assert rows == [
        {
            "request_id": logged.request_id,
            "tenant_id": key.tenant_id,
            "key_id": key.key_id,
            "request": body,
            "response": "Hello!",
            "expires_at": expires,
        }
    ]


async def test_last_used_at_is_the_latest_request_and_never_goes_back(
    writer: AuditWriter, engine: AsyncEngine, key: KeyFixture
) -> None:
    latest = datetime(2026, 11, 20, 10, tzinfo=UTC)
    writer.submit(record(key, ts=latest - timedelta(minutes=5)))
    writer.submit(record(key, ts=latest))
    await writer.flush()

    async def last_used() -> datetime | None:
        async with engine.connect() as connection:
            value = await connection.scalar(
                sa.text("SELECT last_used_at FROM api_keys WHERE id = :id"), {"id": key.key_id}
            )
            return cast(datetime | None, value)

    assert await last_used() == latest
    writer.submit(record(key, ts=latest - timedelta(hours=1)))
    await writer.flush()
    assert await last_used() == latest


async def test_values_postgres_would_refuse_are_cleaned_not_fatal(
    writer: AuditWriter, engine: AsyncEngine, key: KeyFixture
) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    body = {"prompt": "a\x00b", "literal": "\\u0000", "n": float("nan")}
    dirty = record(
        key,
        model="evil\x00model",
        client_ip="not-an-ip",
        user_agent="x" * 2000,
        prompt_log=PromptLogRecord(body, "out\x00put", expires),
    )
    writer.submit(dirty)
    await writer.flush()

    rows = await audit_rows(engine, [dirty.request_id])
    assert rows[0]["model"] == "evil\ufffdmodel"
    assert rows[0]["client_ip"] is None
    assert rows[0]["user_agent"] == "x" * 512
    async with engine.connect() as connection:
        logged = (
            await connection.execute(
                sa.text("SELECT request, response FROM prompt_logs WHERE request_id = :id"),
                {"id": dirty.request_id},
            )
        ).one()
    assert logged.request == {"prompt": "a\ufffdb", "literal": "\\u0000", "n": None}
    assert logged.response == "out\ufffdput"


async def test_a_record_postgres_refuses_is_skipped_and_the_rest_written(
    writer: AuditWriter, engine: AsyncEngine, key: KeyFixture
) -> None:
    good = [record(key) for _ in range(6)]
    bad = record(None, tenant_id=cast(Any, "not-a-uuid"))
    for item in [*good[:3], bad, *good[3:]]:
        writer.submit(item)

    await writer.flush()

    counts = await count_by_request_id(engine, [r.request_id for r in [*good, bad]])
    assert counts == {r.request_id: 1 for r in good}
    assert writer.rejected == 1
    assert writer.depth == 0
    assert (await usage_of(engine, key.key_id))[(good[0].ts.date(), "llama3.1:8b")][0] == 6


async def test_background_task_flushes_on_the_interval(
    engine: AsyncEngine, database_url: str, key: KeyFixture
) -> None:
    audit = AuditWriter(engine, writer_settings(database_url, audit_flush_interval_ms=50))
    await audit.start()
    try:
        item = record(key)
        audit.submit(item)
        counts = await eventually(
            lambda: count_by_request_id(engine, [item.request_id]), lambda c: bool(c)
        )
        assert counts == {item.request_id: 1}
    finally:
        await audit.aclose()


async def test_a_full_batch_is_flushed_without_waiting_for_the_interval(
    engine: AsyncEngine, database_url: str, key: KeyFixture
) -> None:
    # The interval is a minute: only the batch-size wake-up can write these in time.
    audit = AuditWriter(engine, writer_settings(database_url), batch_rows=5)
    await audit.start()
    try:
        items = [record(key) for _ in range(5)]
        for item in items:
            audit.submit(item)
        ids = [item.request_id for item in items]
        counts = await eventually(lambda: count_by_request_id(engine, ids), lambda c: len(c) == 5)
        assert set(counts.values()) == {1}
    finally:
        await audit.aclose()


async def test_aclose_flushes_everything_then_refuses_new_records(
    engine: AsyncEngine, database_url: str, key: KeyFixture
) -> None:
    audit = AuditWriter(engine, writer_settings(database_url))
    await audit.start()
    items = [record(key) for _ in range(3)]
    for item in items:
        audit.submit(item)

    await audit.aclose()

    counts = await count_by_request_id(engine, [item.request_id for item in items])
    assert counts == {item.request_id: 1 for item in items}
    assert audit.depth == 0
    audit.submit(record(key))
    assert (audit.depth, audit.dropped, audit.accepting) == (0, 1, False)


async def test_pending_usage_counts_buffered_tokens_by_key_and_day(
    writer: AuditWriter, key: KeyFixture
) -> None:
    today = datetime.now(UTC)
    yesterday = today - timedelta(days=1)
    other = dataclasses.replace(key, key_id=uuid.uuid4())
    writer.submit(record(key, ts=today, prompt_tokens=1, completion_tokens=2))
    writer.submit(record(key, ts=yesterday, prompt_tokens=10, completion_tokens=20))
    writer.submit(record(other, ts=today, prompt_tokens=100, completion_tokens=200))
    writer.submit(record(None, prompt_tokens=1000, completion_tokens=0))

    assert writer.pending_usage(key.tenant_id, key.key_id, today.date()) == 3
    assert writer.pending_usage(key.tenant_id, key.key_id, None) == 33
    assert writer.pending_usage(key.tenant_id, None, today.date()) == 303
    assert writer.pending_usage(key.tenant_id, None, None) == 333

    await writer.flush()
    assert writer.pending_usage(key.tenant_id, None, None) == 0


async def test_accepting_turns_false_at_the_buffer_limit(
    engine: AsyncEngine, database_url: str, key: KeyFixture
) -> None:
    audit = AuditWriter(engine, writer_settings(database_url, audit_buffer_max_rows=3))
    try:
        for _ in range(2):
            audit.submit(record(key))
        assert audit.accepting
        audit.submit(record(key))
        assert not audit.accepting
        # Past the limit records are still kept (up to twice the limit), then dropped.
        for _ in range(5):
            audit.submit(record(key))
        assert (audit.depth, audit.dropped) == (6, 2)

        await audit.flush()
        assert audit.accepting
    finally:
        await audit.aclose()


async def test_a_record_the_database_refuses_is_isolated_and_the_rest_written(
    writer: AuditWriter, engine: AsyncEngine, key: KeyFixture
) -> None:
    """One corrupt record (here a tenant id that is no UUID, which COPY cannot encode)
    must not stall auditing: the batch is split until the bad record is found."""
    good = [record(key) for _ in range(4)]
    bad = dataclasses.replace(record(key), tenant_id=cast(Any, "not-a-uuid"))
    for item in (good[0], good[1], bad, good[2], good[3]):
        writer.submit(item)
    await writer.flush()

    assert writer.depth == 0
    assert writer.rejected == 1
    assert await count_by_request_id(engine, [r.request_id for r in good]) == {
        r.request_id: 1 for r in good
    }
    assert await count_by_request_id(engine, [bad.request_id]) == {}


async def test_client_addresses_of_both_families_are_stored_as_inet(
    writer: AuditWriter, engine: AsyncEngine, key: KeyFixture
) -> None:
    spellings = {
        "198.51.100.23": "198.51.100.23",
        "2001:db8::1": "2001:db8::1",
        "2001:DB8:0:0:0:0:0:2": "2001:db8::2",
        "fe80::1%eth0": "fe80::1",  # a zone id is not part of the address
        "::ffff:192.0.2.1": "::ffff:192.0.2.1",
    }
    records = [record(key, client_ip=spelling) for spelling in spellings]
    for item in records:
        writer.submit(item)
    await writer.flush()
    rows = await audit_rows(engine, [r.request_id for r in records])
    assert [row["client_ip"] for row in rows] == [
        ipaddress.ip_address(stored) for stored in spellings.values()
    ]
