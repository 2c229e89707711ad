"""Graceful shutdown on SIGTERM under load: nothing admitted goes unaudited or unsettled.

The gateway stops accepting at once, lets requests in flight run for
SHUTDOWN_GRACE_SECONDS, then cuts the rest short: their upstream requests are
cancelled, their clients get a final in-band error, they are settled (limiter) and
audited as `cancelled`, and the audit buffer is flushed before the process exits.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.errors import shutting_down
from neuronetz_gateway.limits.keys import Periods, subject_keys
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import allow_all_models
from tests.support.databases import REDIS_URL
from tests.support.factories import KeyFixture, make_key, make_tenant
from tests.support.processes import GatewayProcess
from tests.support.stack import gateway_env

SHORT = "qwen2.5:0.5b"  # streams of ~0.8 s: finish within the grace period
LONG = "llama3.1:8b"  # streams of ~50 s: cut short when the grace period ends
SLOW = "nomic-embed-text:latest"  # embeddings answered after 30 s: cut before any byte
GRACE_SECONDS = 2
MESSAGE = shutting_down().message


@pytest.fixture(scope="module")
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble() as running:
        short = running.behaviour_for(SHORT)
        short.completion_tokens, short.chunk_delay = 8, 0.1
        long = running.behaviour_for(LONG)
        long.completion_tokens, long.chunk_delay = 1000, 0.05
        running.behaviour_for(SLOW).first_byte_delay = 30.0
        yield running


@pytest.fixture
async def limited_key(session: AsyncSession) -> KeyFixture:
    """Limits and a budget, so every request holds a lease and a reservation."""
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    await session.execute(
        sa.text(
            "UPDATE tenant_limits SET rpm = 10000, max_concurrent = 100,"
            " daily_tokens = 100000000 WHERE tenant_id = :t"
        ),
        {"t": tenant.id},
    )
    await session.commit()
    return await make_key(session, tenant.name)


@dataclass
class Call:
    request_id: str
    model: str
    path: str
    streamed: bool
    started: asyncio.Event = field(default_factory=asyncio.Event)
    status: int = 0
    ending: str = ""  # the last line or frame the client received


async def _run(client: httpx.AsyncClient, key: KeyFixture, call: Call) -> None:
    body: dict[str, object] = {"model": call.model}
    if call.model == SLOW:
        body["input"] = "talk"
    else:
        body.update(messages=[{"role": "user", "content": "talk"}], stream=call.streamed)
    headers = {"Authorization": f"Bearer {key.secret}", "X-Request-ID": call.request_id}
    async with client.stream("POST", call.path, json=body, headers=headers) as response:
        call.status = response.status_code
        async for line in response.aiter_lines():
            call.started.set()
            if line:
                call.ending = line
    call.started.set()


def _calls() -> list[Call]:
    plan = [
        (SHORT, "/api/chat", True, 6),
        (SHORT, "/v1/chat/completions", True, 3),
        (SHORT, "/api/chat", False, 3),
        (LONG, "/api/chat", True, 4),
        (LONG, "/v1/chat/completions", True, 2),
        (SLOW, "/api/embed", False, 2),
    ]
    return [
        Call(f"sd-{uuid.uuid4().hex[:10]}", model, path, streamed)
        for model, path, streamed, count in plan
        for _ in range(count)
    ]


async def _audit_rows(engine: AsyncEngine, ids: list[str]) -> dict[str, list[tuple[str, int]]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            sa.text(
                "SELECT client_request_id, outcome, completion_tokens FROM audit_log"
                " WHERE client_request_id = ANY(:ids)"
            ),
            {"ids": ids},
        )
        rows: dict[str, list[tuple[str, int]]] = {}
        for request_id, outcome, tokens in result:
            rows.setdefault(request_id, []).append((outcome, tokens))
        return rows


async def _sums(engine: AsyncEngine, key: KeyFixture) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(requests, prompt, completion) of the key: from audit_log and from usage_daily."""
    async with engine.connect() as connection:
        audited = (
            await connection.execute(
                sa.text(
                    "SELECT count(*), sum(prompt_tokens), sum(completion_tokens)"
                    " FROM audit_log WHERE key_id = :k"
                ),
                {"k": key.key_id},
            )
        ).one()
        usage = (
            await connection.execute(
                sa.text(
                    "SELECT sum(requests), sum(prompt_tokens), sum(completion_tokens)"
                    " FROM usage_daily WHERE key_id = :k"
                ),
                {"k": key.key_id},
            )
        ).one()
    return tuple(int(v) for v in audited), tuple(int(v) for v in usage)


async def test_sigterm_under_load_loses_no_audit_or_usage_row(
    database_url: str, double: OllamaDouble, engine: AsyncEngine, limited_key: KeyFixture
) -> None:
    # No gateway queue (OLLAMA_SLOTS=0): every request is upstream when the signal comes.
    env = gateway_env(
        database_url, double, SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS), OLLAMA_SLOTS="0"
    )
    gateway = GatewayProcess(env)
    gateway.start()
    assert gateway.wait_for_log("model_catalog_ready", timeout=15) is not None
    calls = _calls()
    try:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
            tasks = [asyncio.create_task(_run(client, limited_key, c)) for c in calls]
            # Every request admitted and upstream; every stream relaying.
            await asyncio.to_thread(double.wait_for_requests, len(calls), 10)
            async with asyncio.timeout(10):
                await asyncio.gather(*(c.started.wait() for c in calls if c.streamed))
            signalled = time.monotonic()
            gateway.signal(signal.SIGTERM)
            # No new connections once shutdown began.
            assert await asyncio.to_thread(gateway.wait_for_log, "Shutting down", 5) is not None
            with pytest.raises(httpx.ConnectError):
                async with httpx.AsyncClient(base_url=gateway.base_url) as fresh:
                    await fresh.get("/healthz")
            async with asyncio.timeout(GRACE_SECONDS + 10):
                await asyncio.gather(*tasks)
            # uvicorn re-raises the signal once it has shut down cleanly.
            assert await asyncio.to_thread(gateway.wait, 20) == -signal.SIGTERM
            stopped = time.monotonic() - signalled
    finally:
        gateway.kill()

    logs = gateway.logs()
    assert "gateway_stopped" in logs
    for trouble in ("audit_rows_lost_on_shutdown", "requests_not_drained", "Exception in ASGI"):
        assert trouble not in logs
    assert GRACE_SECONDS <= stopped < GRACE_SECONDS + 5

    # What the clients saw: short requests complete, long streams ended in-band, and
    # requests still waiting for their first byte a 503.
    for call in calls:
        assert call.status == (503 if call.model == SLOW else 200), call
        if call.model == SHORT:
            assert MESSAGE not in call.ending, call
        else:
            assert MESSAGE in call.ending, call
            assert orjson.loads(call.ending.removeprefix("data: "))["error"]

    # Every request audited exactly once, with the right outcome.
    rows = await _audit_rows(engine, [c.request_id for c in calls])
    assert sorted(rows) == sorted(c.request_id for c in calls)
    for call in calls:
        [(outcome, tokens)] = rows[call.request_id]
        if call.model == SHORT:
            assert (outcome, tokens) == ("ok", 8)
        elif call.model == LONG:
            assert outcome == "cancelled"
            assert 0 < tokens < 1000
        else:
            assert (outcome, tokens) == ("cancelled", 0)
    # The upstream work of every request cut short was stopped.
    for _ in range(sum(c.model != SHORT for c in calls)):
        await asyncio.to_thread(double.wait_for_cancellation, 2.0)

    # usage_daily agrees with the audit rows, and the limiter let go of everything.
    audited, usage = await _sums(engine, limited_key)
    assert audited == usage
    assert audited[0] == len(calls)
    redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        periods = Periods.at(time.time())
        for key_id in (limited_key.key_id, None):
            keys = subject_keys(limited_key.tenant_id, key_id, periods)
            assert await redis.zcard(keys.live) == 0  # no concurrency lease left
            assert await redis.hlen(keys.reservations) == 0  # no budget reservation left
            daily = await redis.hgetall(keys.daily)
            assert int(daily.get("resv", 0)) == 0
            assert int(daily["used"]) == audited[1] + audited[2]
    finally:
        await redis.aclose()
