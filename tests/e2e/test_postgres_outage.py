"""Postgres unreachable for a RUNNING gateway (REFERENCE.md §4.10): buffer, then 503, then catch up.

Only this gateway loses Postgres: its DATABASE_URL goes through a TCP proxy the test
cuts (the shared server stays up; the test reads rows over a direct connection). The
proxy runs in the test's event loop, so the blocking process helpers run in threads.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import allow_all_models, audit_rows
from tests.support.factories import make_key, make_tenant
from tests.support.metrics import scrape
from tests.support.processes import GatewayProcess
from tests.support.stack import gateway_env
from tests.support.tcp_proxy import TcpProxy

BUFFER_ROWS = 20
BODY = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    target = make_url(database_url)
    tcp = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await tcp.start()
    yield tcp
    await tcp.aclose()


@pytest.fixture
async def proxied_gateway(
    database_url: str, double: OllamaDouble, proxy: TcpProxy
) -> AsyncIterator[GatewayProcess]:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    env = gateway_env(
        url.render_as_string(hide_password=False),
        double,
        AUDIT_BUFFER_MAX_ROWS=str(BUFFER_ROWS),
    )
    process = GatewayProcess(env)
    await asyncio.to_thread(process.start)
    try:
        ready = await asyncio.to_thread(process.wait_for_log, "model_catalog_ready", 15)
        assert ready is not None, process.logs()
        yield process
    finally:
        proxy.restore()
        await asyncio.to_thread(process.stop)


async def _count_rows(engine: AsyncEngine, request_ids: list[str]) -> dict[str, int]:
    async with engine.connect() as connection:
        result = await connection.execute(
            sa.text(
                "SELECT client_request_id, count(*) FROM audit_log"
                " WHERE client_request_id = ANY(:ids) GROUP BY client_request_id"
            ),
            {"ids": request_ids},
        )
        return {row[0]: row[1] for row in result}


async def test_outage_buffers_then_refuses_then_every_row_arrives_once(
    proxied_gateway: GatewayProcess, proxy: TcpProxy, engine: AsyncEngine, session: AsyncSession
) -> None:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    key = await make_key(session, tenant.name)
    unused = await make_key(session, tenant.name)  # never seen by the gateway
    run = uuid.uuid4().hex[:8]

    async with httpx.AsyncClient(base_url=proxied_gateway.base_url, timeout=10) as client:

        async def call(number: int, secret: str = key.secret) -> httpx.Response:
            headers = {"Authorization": f"Bearer {secret}", "X-Request-ID": f"out-{run}-{number}"}
            return await client.post("/api/chat", json=BODY, headers=headers)

        assert (await call(0)).status_code == 200  # the key is verified and cached
        assert await audit_rows(engine, f"out-{run}-0")

        proxy.cut()
        answers = [await call(n) for n in range(1, BUFFER_ROWS + 6)]
        statuses = [a.status_code for a in answers]
        # Served while the buffer has room, then refused rather than served unaudited.
        assert statuses == [200] * BUFFER_ROWS + [503] * 5
        assert all(int(a.headers["retry-after"]) >= 1 for a in answers[BUFFER_ROWS:])
        assert (await scrape(client)).value("neuronetz_audit_buffer_rows") == BUFFER_ROWS + 5
        # A key it has not cached cannot be checked: refused (fail closed), not served.
        assert (await call(99, unused.secret)).status_code == 503
        buffered = BUFFER_ROWS + 6  # the 503s are audited too; the unknown key's as well

        proxy.restore()
        ids = [f"out-{run}-{n}" for n in [*range(1, BUFFER_ROWS + 6), 99]]
        deadline = asyncio.get_running_loop().time() + 20
        while len(counts := await _count_rows(engine, ids)) < buffered:
            assert asyncio.get_running_loop().time() < deadline, counts
            await asyncio.sleep(0.1)
        assert counts == dict.fromkeys(ids, 1)  # every row exactly once

        # The gateway has recovered: buffer drained, requests served again.
        assert (await call(100)).status_code == 200
        assert await audit_rows(engine, f"out-{run}-100")

    async with engine.connect() as connection:
        usage = await connection.scalar(
            sa.text("SELECT sum(requests) FROM usage_daily WHERE key_id = :k"), {"k": key.key_id}
        )
    # Warm-up, 20 served, 5 refused with 503 (all named the key), and the last request.
    assert usage == 1 + BUFFER_ROWS + 5 + 1
