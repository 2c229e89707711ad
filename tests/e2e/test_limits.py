"""Rate limits, concurrency and budgets across two real gateway processes sharing Redis
(docs/REFERENCE.md §4.5, §4.6): exact global limits, inheritance, output caps, rebuild after a Redis
flush, fail-closed on Redis loss, and slots coming back after disconnects and crashes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping

import httpx
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.db.tables import AuditLog
from neuronetz_gateway.limits import estimate_prompt_tokens
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import audit_rows, limited_key
from tests.support.factories import KeyFixture, make_key
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway
from tests.support.tcp_proxy import TcpProxy

# A Redis database of its own: the flush test empties it without touching anyone else.
REDIS_DB = 12
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
LEASE_SECONDS = 2
CHAT = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}], "stream": False}
# One model request of each shape: native, Anthropic Messages, OpenAI Responses.
REQUESTS: dict[str, dict[str, object]] = {
    "/api/chat": CHAT,
    "/v1/messages": {"model": "llama3.1:8b", "max_tokens": 100, "messages": CHAT["messages"]},
    "/v1/responses": {"model": "llama3.1:8b", "input": "hi"},
}
STREAMED_ROUTES = ["/api/chat", "/v1/messages", "/v1/responses"]
# Where each route's body holds the output cap Ollama applies.
CAP = {
    "/api/chat": lambda body: body["options"]["num_predict"],
    "/v1/messages": lambda body: body["max_tokens"],
    "/v1/responses": lambda body: body["max_output_tokens"],
    "/v1/chat/completions": lambda body: body["max_tokens"],
}


def refusal_of(path: str, response: httpx.Response) -> tuple[str | None, str]:
    """(error type or code, message) of a refusal in the route's error shape."""
    body = response.json()
    if path.startswith("/api/"):
        assert set(body) == {"error"}
        return None, body["error"]
    if path == "/v1/messages":
        assert body["type"] == "error"
        return body["error"]["type"], body["error"]["message"]
    return body["error"]["code"], body["error"]["message"]


@pytest.fixture(scope="module")
def replicas(database_url: str, double: OllamaDouble) -> Iterator[list[GatewayProcess]]:
    env = {
        "REDIS_URL": REDIS_URL,
        "CONCURRENCY_LEASE_SECONDS": str(LEASE_SECONDS),
        "BUDGET_DEFAULT_MAX_OUTPUT_TOKENS": "50",
    }
    processes = [start_gateway(database_url, double, env) for _ in range(2)]
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture
async def clients(replicas: list[GatewayProcess]) -> AsyncIterator[list[httpx.AsyncClient]]:
    limits = httpx.Limits(max_connections=200)
    clients = [httpx.AsyncClient(base_url=p.base_url, timeout=20, limits=limits) for p in replicas]
    yield clients
    for client in clients:
        await client.aclose()


def auth(key: KeyFixture) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.secret}"}


async def spread(
    clients: list[httpx.AsyncClient],
    key: KeyFixture,
    count: int,
    path: str = "/api/chat",
    body: Mapping[str, object] | None = None,
) -> list[httpx.Response]:
    """`count` concurrent requests, alternating between the replicas."""
    return list(
        await asyncio.gather(
            *(
                clients[i % len(clients)].post(path, json=body or CHAT, headers=auth(key))
                for i in range(count)
            )
        )
    )


@pytest.mark.parametrize("path", list(REQUESTS))
async def test_rpm_is_exact_across_replicas(
    clients: list[httpx.AsyncClient], session: AsyncSession, double: OllamaDouble, path: str
) -> None:
    key = await limited_key(session, key={"rpm": 10})
    responses = await spread(clients, key, 40, path, REQUESTS[path])
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 10
    assert statuses.count(429) == 30
    refused = next(r for r in responses if r.status_code == 429)
    kind, message = refusal_of(path, refused)
    assert kind in (None, "rate_limit_error", "rate_limit_exceeded")
    assert "10 requests per minute" in message
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "10"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-reset-requests" in refused.headers
    assert len(double.requests) == 10  # refused requests never reach Ollama


async def test_openai_surface_gets_rate_limit_exceeded(
    clients: list[httpx.AsyncClient], session: AsyncSession
) -> None:
    key = await limited_key(session, key={"rpm": 1})
    body = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "x"}]}
    first = await clients[0].post("/v1/chat/completions", json=body, headers=auth(key))
    second = await clients[1].post("/v1/chat/completions", json=body, headers=auth(key))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert second.status_code == 429
    error = second.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "requests"


async def test_tenant_limit_binds_all_its_keys(
    clients: list[httpx.AsyncClient], session: AsyncSession
) -> None:
    first = await limited_key(session, tenant={"rpm": 6})
    second = await make_key(session, first.tenant_name)
    responses = await asyncio.gather(spread(clients, first, 10), spread(clients, second, 10))
    admitted = [sum(r.status_code == 200 for r in batch) for batch in responses]
    assert sum(admitted) == 6


async def test_budget_holds_under_concurrency(
    clients: list[httpx.AsyncClient],
    session: AsyncSession,
    engine: AsyncEngine,
    double: OllamaDouble,
) -> None:
    """50 concurrent requests against a 1,000-token budget never record more than it.

    The bound guaranteed (docs/LIMITS.md): budget + the sum over admitted requests of
    (real prompt tokens - prompt estimate). Here the estimate (bytes / 3) exceeds the
    double's count (words), so that sum is negative and the bound is the budget itself.
    """
    double.completion_tokens = 60
    key = await limited_key(session, key={"total_tokens": 1000})
    body = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "count to ten"}]}
    responses = await spread(clients, key, 50, "/v1/chat/completions", body)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert ok
    assert refused
    assert len(ok) + len(refused) == 50
    used = sum(r.json()["usage"]["total_tokens"] for r in ok)
    assert used <= 1000
    error = refused[0].json()["error"]
    assert error["code"] == "insufficient_quota"
    assert "total" in error["message"]
    assert "key" in error["message"]
    # Every forwarded request carried the output cap computed from the headroom.
    for seen in double.requests:
        assert isinstance(seen.json, dict)
        assert 1 <= seen.json["max_tokens"] <= 50


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses"])
async def test_budget_holds_under_concurrent_streams(
    clients: list[httpx.AsyncClient],
    session: AsyncSession,
    engine: AsyncEngine,
    double: OllamaDouble,
    path: str,
) -> None:
    """20 concurrent streams against a 1,000-token daily budget record at most the
    budget plus the error of the prompt estimate (docs/LIMITS.md)."""
    double.completion_tokens = 100
    double.chunk_delay = 0.002
    key = await limited_key(session, key={"daily_tokens": 1000})
    text = "count from one to ten, slowly please"
    body = {**REQUESTS[path], "stream": True}
    body.update(
        {"messages": [{"role": "user", "content": text}]} if "messages" in body else {"input": text}
    )

    async def stream(index: int) -> int:
        client = clients[index % len(clients)]
        headers = auth(key)
        async with client.stream("POST", path, json=body, headers=headers) as response:
            await response.aread()
            return response.status_code

    statuses = await asyncio.gather(*(stream(i) for i in range(20)))

    admitted = statuses.count(200)
    assert admitted + statuses.count(429) == 20
    rows = await _key_rows(engine, key.key_id, expected=20)
    served = [row for row in rows if row.outcome == "ok"]
    assert len(served) == admitted == len(double.requests)
    estimate = estimate_prompt_tokens(len(text.encode()))
    estimate_error = sum(max(0, row.prompt_tokens - estimate) for row in served)
    recorded = sum(row.prompt_tokens + row.completion_tokens for row in rows)
    assert recorded <= 1000 + estimate_error
    caps = [CAP[path](seen.json) for seen in double.requests]
    assert all(1 <= cap <= 50 for cap in caps)
    assert statuses.count(429) or min(caps) < 50  # the budget was binding


async def _key_rows(engine: AsyncEngine, key_id: uuid.UUID, expected: int) -> list[AuditLog]:
    deadline = time.monotonic() + 5
    while True:
        async with AsyncSession(engine) as session:
            rows = list(await session.scalars(sa.select(AuditLog).where(AuditLog.key_id == key_id)))
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)  # the audit writer flushes every 50 ms here


async def test_output_cap_is_sent_upstream(
    clients: list[httpx.AsyncClient], session: AsyncSession, double: OllamaDouble
) -> None:
    key = await limited_key(session, key={"daily_tokens": 100_000})
    body = {**CHAT, "options": {"num_predict": 500, "temperature": 0}}
    response = await clients[0].post("/api/chat", json=body, headers=auth(key))
    assert response.status_code == 200
    [seen] = double.requests
    assert isinstance(seen.json, dict)
    assert seen.json["options"] == {"num_predict": 50, "temperature": 0}


async def test_daily_budget_message_names_the_reset(
    clients: list[httpx.AsyncClient], session: AsyncSession
) -> None:
    # The key's own budget is large: the tenant's is the one that runs out.
    key = await limited_key(session, tenant={"daily_tokens": 5}, key={"daily_tokens": 10_000})
    responses = [await clients[0].post("/api/chat", json=CHAT, headers=auth(key)) for _ in range(3)]
    refused = [r for r in responses if r.status_code == 429]
    assert refused
    message = refused[-1].json()["error"]
    assert "daily" in message
    assert "tenant" in message
    assert "resets" in message


async def test_tpm_refuses_once_the_window_is_full(
    clients: list[httpx.AsyncClient], session: AsyncSession, double: OllamaDouble
) -> None:
    double.completion_tokens = 30
    key = await limited_key(session, key={"tpm": 20})
    first = await clients[0].post("/api/chat", json=CHAT, headers=auth(key))
    assert first.status_code == 200
    second = await clients[1].post("/api/chat", json=CHAT, headers=auth(key))
    assert second.status_code == 429
    assert second.headers["x-ratelimit-limit-tokens"] == "20"
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_budget_survives_a_redis_flush(
    clients: list[httpx.AsyncClient],
    session: AsyncSession,
    engine: AsyncEngine,
    double: OllamaDouble,
) -> None:
    double.completion_tokens = 40
    key = await limited_key(session, key={"daily_tokens": 200})
    for _ in range(3):
        assert (await clients[0].post("/api/chat", json=CHAT, headers=auth(key))).status_code == 200
    spent = await _usage_in_postgres(engine, key.key_id, expected_requests=3)
    assert spent == 3 * 41
    redis = aioredis.Redis.from_url(REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    # 123 of 200 spent. A counter rebuilt from usage_daily leaves 77: one request with
    # the default cap (41 tokens), one capped to the rest (36), then refusals. A counter
    # that started again from zero would admit all five.
    responses = [await clients[1].post("/api/chat", json=CHAT, headers=auth(key)) for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 429, 429, 429]
    assert responses[-1].json()["error"].startswith("daily")
    assert await _usage_in_postgres(engine, key.key_id, expected_requests=8) == 200


async def _usage_in_postgres(engine: AsyncEngine, key_id: uuid.UUID, expected_requests: int) -> int:
    deadline = time.monotonic() + 5
    while True:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.text(
                        "SELECT coalesce(sum(requests), 0), "
                        "coalesce(sum(prompt_tokens + completion_tokens), 0) "
                        "FROM usage_daily WHERE key_id = :k"
                    ),
                    {"k": key_id},
                )
            ).one()
        if row[0] >= expected_requests or time.monotonic() > deadline:
            assert row[0] == expected_requests
            return int(row[1])
        await asyncio.sleep(0.05)  # the audit writer flushes every 50 ms here


@pytest.mark.parametrize("path", STREAMED_ROUTES)
async def test_disconnect_frees_the_slot_within_a_second(
    clients: list[httpx.AsyncClient],
    session: AsyncSession,
    engine: AsyncEngine,
    double: OllamaDouble,
    path: str,
) -> None:
    double.completion_tokens = 10_000
    double.chunk_delay = 0.01
    key = await limited_key(session, key={"max_concurrent": 1})
    body = REQUESTS[path]
    request_id = "gone" + path.replace("/", "-")
    headers = {**auth(key), "X-Request-ID": request_id}
    async with clients[0].stream("POST", path, json={**body, "stream": True}, headers=headers) as r:
        assert r.status_code == 200
        busy = await clients[1].post(path, json=body, headers=auth(key))
        assert busy.status_code == 429
        chunks = r.aiter_bytes()
        for _ in range(3):
            await anext(chunks)
    left = time.monotonic()
    cancelled = await asyncio.to_thread(double.wait_for_cancellation, 2.0)
    double.completion_tokens = 5
    double.chunk_delay = 0.0
    while True:
        retry = await clients[1].post(path, json=body, headers=auth(key))
        if retry.status_code == 200:
            break
        assert time.monotonic() - left < 1.0, "slot not released within 1 s"
    assert time.monotonic() - left < 1.0
    [row] = await audit_rows(engine, request_id)
    assert row.outcome == "cancelled"
    # The tokens seen: the prompt estimate and one per relayed content chunk.
    assert 1 <= row.completion_tokens <= cancelled.chunks_sent
    assert row.prompt_tokens == estimate_prompt_tokens(len(b"hi"))


async def test_redis_loss_fails_closed(
    database_url: str, double: OllamaDouble, session: AsyncSession
) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    port = await proxy.start()
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/{REDIS_DB}"}
    gateway = await asyncio.to_thread(start_gateway, database_url, double, env)
    try:
        key = await limited_key(session, key={"rpm": 1000})
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            assert (await client.post("/api/chat", json=CHAT, headers=auth(key))).status_code == 200
            double.clear()
            proxy.cut()
            down = await client.post("/api/chat", json=CHAT, headers=auth(key))
            assert down.status_code == 503
            assert int(down.headers["retry-after"]) >= 1
            assert "unavailable" in down.json()["error"]
            assert double.requests == []  # never served unmetered
            proxy.restore()
            back = await client.post("/api/chat", json=CHAT, headers=auth(key))
            assert back.status_code == 200
    finally:
        await asyncio.to_thread(gateway.stop)
        await proxy.aclose()


async def test_sigkilled_replica_slots_come_back_after_the_lease(
    database_url: str,
    double: OllamaDouble,
    session: AsyncSession,
    clients: list[httpx.AsyncClient],
) -> None:
    env = {"REDIS_URL": REDIS_URL, "CONCURRENCY_LEASE_SECONDS": str(LEASE_SECONDS)}
    doomed = await asyncio.to_thread(start_gateway, database_url, double, env)
    key = await limited_key(session, key={"max_concurrent": 2})
    double.completion_tokens = 100_000
    double.chunk_delay = 0.01
    try:
        async with httpx.AsyncClient(base_url=doomed.base_url, timeout=20) as victim:
            body = {**CHAT, "stream": True}
            opened = [
                await victim.send(
                    victim.build_request("POST", "/api/chat", json=body, headers=auth(key)),
                    stream=True,
                )
                for _ in range(2)
            ]
            assert [r.status_code for r in opened] == [200, 200]
            doomed.signal(signal.SIGKILL)
            killed = time.monotonic()
            double.completion_tokens = 5
            double.chunk_delay = 0.0
            refused = await clients[0].post("/api/chat", json=CHAT, headers=auth(key))
            assert refused.status_code == 429
            while True:
                response = await clients[0].post("/api/chat", json=CHAT, headers=auth(key))
                if response.status_code == 200:
                    break
                assert time.monotonic() - killed < LEASE_SECONDS + 2
            # Not long before the lease could have expired: the slots were really held.
            assert time.monotonic() - killed >= LEASE_SECONDS * 0.5
            for response in opened:
                with contextlib.suppress(httpx.HTTPError):
                    await response.aclose()
    finally:
        doomed.kill()
