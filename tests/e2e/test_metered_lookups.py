"""`/api/show` and `/api/ps` ask Ollama without running a model: they count against
`rpm` (no tokens, no concurrency slot), on both backends (docs/REFERENCE.md §4.5).

`/api/show` with `verbose: true` is expensive on a real Ollama: without this a key
limited to 600 requests a minute could send any number of them.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.admin.limits import LimitUpdate, set_tenant_limits
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import BOTH_BACKENDS, allow_all_models, audit_rows
from tests.support.factories import KeyFixture, make_key, make_tenant

pytestmark = BOTH_BACKENDS
MODEL = "llama3.1:8b"
SHOW = {"model": MODEL, "verbose": True}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}


async def limited_key(session: AsyncSession, **limits: int) -> KeyFixture:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    await set_tenant_limits(session, tenant.name, LimitUpdate(values=limits))
    return await make_key(session, tenant.name)


def upstream_calls(double: OllamaDouble, path: str) -> int:
    return sum(1 for request in double.requests if request.path == path)


async def test_650_shows_with_rpm_600_are_50_refusals(
    session: AsyncSession, client: httpx.AsyncClient, double: OllamaDouble
) -> None:
    key = await limited_key(session, rpm=600)
    headers = {"Authorization": f"Bearer {key.secret}"}
    lanes = asyncio.Semaphore(16)

    async def show() -> httpx.Response:
        async with lanes:
            return await client.post("/api/show", json=SHOW, headers=headers)

    responses = await asyncio.gather(*(show() for _ in range(650)))
    assert Counter(r.status_code for r in responses) == {200: 600, 429: 50}
    assert upstream_calls(double, "/api/show") == 600
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"].startswith("rate limit of the key reached: 600 requests")
    assert int(refused.headers["retry-after"]) >= 1
    served = next(r for r in responses if r.status_code == 200)
    assert served.headers["x-ratelimit-limit-requests"] == "600"


async def test_ps_counts_against_rpm_and_is_audited(
    session: AsyncSession, client: httpx.AsyncClient, double: OllamaDouble, engine: AsyncEngine
) -> None:
    key = await limited_key(session, rpm=3)
    headers = {"Authorization": f"Bearer {key.secret}"}
    statuses = [(await client.get("/api/ps", headers=headers)).status_code for _ in range(3)]
    refused = await client.get("/api/ps", headers={**headers, "X-Request-ID": "ps-rpm-1"})
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert upstream_calls(double, "/api/ps") == 3
    [row] = await audit_rows(engine, "ps-rpm-1")
    assert (row.status_code, row.outcome) == (429, "rate_limited")


async def test_show_and_model_requests_share_one_window(
    session: AsyncSession, client: httpx.AsyncClient, double: OllamaDouble
) -> None:
    key = await limited_key(session, rpm=2)
    headers = {"Authorization": f"Bearer {key.secret}"}
    assert (await client.post("/api/show", json=SHOW, headers=headers)).status_code == 200
    assert (await client.post("/api/chat", json=CHAT, headers=headers)).status_code == 200
    assert (await client.post("/api/show", json=SHOW, headers=headers)).status_code == 429
    assert (await client.post("/api/chat", json=CHAT, headers=headers)).status_code == 429
    assert upstream_calls(double, "/api/show") == upstream_calls(double, "/api/chat") == 1


async def test_show_costs_no_tokens(
    session: AsyncSession, client: httpx.AsyncClient, double: OllamaDouble
) -> None:
    """A spent budget refuses model requests, not the model's description."""
    double.completion_tokens = 8
    key = await limited_key(session, daily_tokens=5, rpm=100)
    headers = {"Authorization": f"Bearer {key.secret}"}
    assert (await client.post("/api/chat", json=CHAT, headers=headers)).status_code == 200
    spent = await client.post("/api/chat", json=CHAT, headers=headers)
    assert spent.status_code == 429
    assert "budget" in spent.json()["error"]
    shows = [await client.post("/api/show", json=SHOW, headers=headers) for _ in range(3)]
    assert [r.status_code for r in shows] == [200, 200, 200]
