"""Postgres outages as the writer sees them: buffering, back-pressure, exactly-once.

Only the writer loses Postgres: its engine goes through a proxy the test cuts; the
shared server stays up, and the test checks the rows through a direct connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.audit import AuditWriter
from neuronetz_gateway.db.engine import create_engine
from tests.audit.conftest import count_by_request_id, eventually, record, usage_of, writer_settings
from tests.support.factories import KeyFixture
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    target = make_url(database_url)
    tcp = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await tcp.start()
    yield tcp
    await tcp.aclose()


@pytest.fixture
async def proxied_engine(database_url: str, proxy: TcpProxy) -> AsyncIterator[AsyncEngine]:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    engine = create_engine(url.render_as_string(hide_password=False))
    yield engine
    await engine.dispose()


async def test_outage_buffers_refuses_past_the_limit_and_loses_nothing(
    proxied_engine: AsyncEngine,
    engine: AsyncEngine,
    proxy: TcpProxy,
    database_url: str,
    key: KeyFixture,
) -> None:
    settings = writer_settings(database_url, audit_flush_interval_ms=20, audit_buffer_max_rows=10)
    audit = AuditWriter(proxied_engine, settings, max_backoff_seconds=0.1)
    await audit.start()
    try:
        before = record(key)
        audit.submit(before)
        await eventually(lambda: count_by_request_id(engine, [before.request_id]), bool)

        proxy.cut()
        during = [record(key) for _ in range(14)]
        for item in during[:10]:
            audit.submit(item)
        assert not audit.accepting
        for item in during[10:]:
            audit.submit(item)
        # Let the writer fail a few times against the dead connection before restoring.
        await eventually(_refused(proxy), lambda refused: refused >= 3)
        assert (audit.depth, audit.dropped, audit.accepting) == (14, 0, False)

        proxy.restore()
        ids = [item.request_id for item in during]
        counts = await eventually(
            lambda: count_by_request_id(engine, ids), lambda c: len(c) == len(ids)
        )
        assert set(counts.values()) == {1}
        await eventually(_depth(audit), lambda depth: depth == 0)
        assert audit.accepting
        usage = await usage_of(engine, key.key_id)
        assert sum(requests for requests, _, _ in usage.values()) == 15
    finally:
        await audit.aclose()


@pytest.mark.parametrize(
    ("trigger", "after_reply"),
    [
        # COMMIT applied, its acknowledgement lost: the ambiguous case.
        (b"COMMIT", True),
        # COMMIT never reached the server: the transaction aborts.
        (b"COMMIT", False),
        # The connection dies in the middle of the batch.
        (b"INSERT INTO usage_daily", False),
    ],
    ids=["commit-ack-lost", "commit-lost", "mid-transaction"],
)
async def test_a_batch_interrupted_anywhere_is_written_exactly_once(
    proxied_engine: AsyncEngine,
    engine: AsyncEngine,
    proxy: TcpProxy,
    database_url: str,
    key: KeyFixture,
    trigger: bytes,
    after_reply: bool,
) -> None:
    audit = AuditWriter(proxied_engine, writer_settings(database_url))
    try:
        items = [record(key, prompt_tokens=1, completion_tokens=1) for _ in range(25)]
        for item in items:
            audit.submit(item)
        fired = proxy.sabotage(trigger, after_reply=after_reply)

        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the driver raises
            await audit.flush()
        assert fired.is_set()
        assert audit.depth == len(items)
        ids = [item.request_id for item in items]
        written_before_retry = await count_by_request_id(engine, ids)
        assert len(written_before_retry) == (len(items) if after_reply else 0)

        await audit.flush()

        assert audit.depth == 0
        counts = await count_by_request_id(engine, ids)
        assert counts == dict.fromkeys(ids, 1)
        usage = await usage_of(engine, key.key_id)
        assert list(usage.values()) == [(25, 25, 25)]
    finally:
        await audit.aclose()


def _refused(proxy: TcpProxy) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return proxy.refused

    return probe


def _depth(audit: AuditWriter) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return audit.depth

    return probe


async def test_shutdown_during_an_outage_gives_up_at_its_deadline(
    proxied_engine: AsyncEngine, proxy: TcpProxy, database_url: str, key: KeyFixture
) -> None:
    audit = AuditWriter(proxied_engine, writer_settings(database_url), max_backoff_seconds=0.05)
    await audit.start()
    proxy.cut()
    audit.submit(record(key))
    loop = asyncio.get_running_loop()
    started = loop.time()

    await audit.aclose(timeout=0.5)

    assert loop.time() - started < 3.0
    assert audit.depth == 1  # reported as lost, not silently discarded
    assert proxy.refused >= 1
