"""Rate limits, concurrency and budgets through a running gateway (docs/REFERENCE.md §4.5, §4.6), on
both backends: what a client sees (429s, headers, output caps) and what is recorded."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.admin.limits import LimitUpdate, set_tenant_limits
from neuronetz_gateway.db.tables import UsageDaily
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import BOTH_BACKENDS, allow_all_models, audit_rows
from tests.support.factories import KeyFixture, make_key, make_tenant

pytestmark = BOTH_BACKENDS
MODEL = "llama3.1:8b"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}


async def limited_key(session: AsyncSession, **limits: int) -> KeyFixture:
    """A key of a new tenant with `limits`, set before the key exists (so the gateway
    loads them with the key, no change feed involved)."""
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    await set_tenant_limits(session, tenant.name, LimitUpdate(values=limits))
    return await make_key(session, tenant.name)


def auth(key: KeyFixture, request_id: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key.secret}"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    return headers


async def test_rpm_refuses_with_openai_headers_and_is_audited(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    key = await limited_key(session, rpm=2)
    remaining = []
    for _ in range(2):
        ok = await client.post("/v1/chat/completions", json=CHAT, headers=auth(key))
        assert ok.status_code == 200
        assert ok.headers["x-ratelimit-limit-requests"] == "2"
        remaining.append(ok.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["1", "0"]

    refused = await client.post("/v1/chat/completions", json=CHAT, headers=auth(key, "rpm-1"))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.json()["error"]["message"].startswith(
        "rate limit of the key reached: 2 requests per minute; retry in "
    )
    assert 55 <= int(refused.headers["retry-after"]) <= 61
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    [row] = await audit_rows(engine, "rpm-1")
    assert (row.status_code, row.outcome) == (429, "rate_limited")


async def test_budget_caps_the_output_and_refuses_once_spent(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine, double: OllamaDouble
) -> None:
    double.completion_tokens = 8
    key = await limited_key(session, daily_tokens=20)
    for _ in range(3):
        response = await client.post("/api/chat", json=CHAT, headers=auth(key))
        assert response.status_code == 200
    # Headroom minus the prompt estimate (1 token): 20 - 1, then 11 - 1, then 2 - 1.
    caps = [r.json["options"]["num_predict"] for r in double.requests if isinstance(r.json, dict)]
    assert caps == [19, 10, 1]

    refused = await client.post("/api/chat", json=CHAT, headers=auth(key, "budget-1"))
    assert refused.status_code == 429
    message = refused.json()["error"]
    assert message.startswith("daily token budget of the ")
    assert "exhausted; resets at " in message
    [row] = await audit_rows(engine, "budget-1")
    assert row.outcome == "budget_exceeded"
    assert len(double.requests) == 3

    async def recorded() -> int:
        total = await session.scalar(
            sa.select(sa.func.sum(UsageDaily.prompt_tokens + UsageDaily.completion_tokens)).where(
                UsageDaily.key_id == key.key_id, UsageDaily.day == datetime.now(UTC).date()
            )
        )
        return int(total or 0)

    deadline = asyncio.get_running_loop().time() + 5
    while (used := await recorded()) < 20 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)  # the audit writer flushes every 50 ms: poll its result
    assert used == 20  # 1 + 8, 1 + 8, 1 + 1


async def test_concurrency_limit_holds_while_a_stream_runs(
    session: AsyncSession, client: httpx.AsyncClient, double: OllamaDouble
) -> None:
    double.completion_tokens = 20
    double.chunk_delay = 0.02
    key = await limited_key(session, max_concurrent=1)
    stream_body = {**CHAT, "stream": True}
    async with client.stream("POST", "/api/chat", json=stream_body, headers=auth(key)) as stream:
        assert stream.status_code == 200
        second = await client.post("/api/chat", json=CHAT, headers=auth(key))
        assert second.status_code == 429
        assert "concurrency limit of the key reached: 1 requests in flight" in second.text
        await stream.aread()
    double.chunk_delay = 0.0
    assert (await client.post("/api/chat", json=CHAT, headers=auth(key))).status_code == 200


async def test_limits_changed_while_running_apply_within_a_second(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    """What an operator's `set-limits` does to a key the gateway has cached."""
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    key = await make_key(session, tenant.name)
    for _ in range(3):
        assert (await client.post("/api/chat", json=CHAT, headers=auth(key))).status_code == 200

    await set_tenant_limits(session, tenant.name, LimitUpdate(values={"rpm": 0}))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while (await client.post("/api/chat", json=CHAT, headers=auth(key))).status_code != 429:
        assert loop.time() < deadline, "new limits not applied within 1 s"


@pytest.mark.parametrize("surface", ["native", "openai"])
async def test_unlimited_keys_get_no_rate_limit_headers(
    session: AsyncSession, client: httpx.AsyncClient, surface: str
) -> None:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    key = await make_key(session, tenant.name)
    path = "/api/chat" if surface == "native" else "/v1/chat/completions"
    response = await client.post(path, json=CHAT, headers=auth(key))
    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("x-ratelimit")]
