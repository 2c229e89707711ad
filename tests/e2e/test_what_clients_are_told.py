"""What clients are told (docs/REFERENCE.md §4.2, §12): the liveness answer on `/`, 404s
that name the path and the surfaces served, the output cap a budget set, and no
`Retry-After` when waiting will not help."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.policy.routes import SERVED
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import BOTH_BACKENDS, Caller, audit_rows
from tests.e2e.test_limits_on_both_backends import limited_key

pytestmark = BOTH_BACKENDS

MODEL = "llama3.1:8b"
ASK = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_root_is_ollamas_liveness_answer_without_a_key(
    client: httpx.AsyncClient, double: OllamaDouble, engine: AsyncEngine, method: str
) -> None:
    response = await client.request(method, "/", headers={"X-Request-ID": f"live-{method}"})

    assert response.status_code == 200
    assert response.text == ("" if method == "HEAD" else "Ollama is running")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == "17"
    assert response.headers["x-request-id"] == f"live-{method}"
    assert double.requests == []
    assert await audit_rows(engine, f"live-{method}", timeout=0.5) == []


async def test_other_methods_on_root_are_405(client: httpx.AsyncClient) -> None:
    response = await client.post("/", json={})

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("path", "shown", "shape"),
    [
        ("/api/me", "/api/me", "native"),
        ("/v1/audio/transcriptions", "/v1/audio/transcriptions", "openai"),
        ("/v1/messages/batches", "/v1/messages/batches", "anthropic"),
        ("/v1/x%20y/\xe9", "/v1/x%20y/%C3%A9", "openai"),
    ],
)
async def test_404_names_the_path_and_the_surfaces_served(
    caller: Caller, path: str, shown: str, shape: str
) -> None:
    response = await caller.client.post(path, json={}, headers=caller.auth)

    expected = f'no route for "{shown}": this gateway serves {SERVED}'
    assert response.status_code == 404
    body = response.json()
    if shape == "native":
        assert body == {"error": expected}
    elif shape == "openai":
        assert body["error"]["message"] == expected
    else:
        assert body == {"type": "error", "error": {"type": "not_found_error", "message": expected}}
    assert "/v1/messages" in expected
    assert "/v1/responses" in expected


async def test_a_long_path_is_cut_in_the_message(caller: Caller) -> None:
    response = await caller.client.get("/x" * 200, headers=caller.auth)

    message = response.json()["error"]
    assert message.startswith('no route for "' + "/x" * 50 + '…"')


NATIVE_CAP = ("options", "num_predict")


@pytest.mark.parametrize(
    ("path", "body", "cap_at"),
    [
        ("/api/chat", {"messages": ASK, "stream": False}, NATIVE_CAP),
        ("/api/chat", {"messages": ASK, "options": {"num_predict": 5000}}, NATIVE_CAP),
        ("/api/generate", {"prompt": "hi", "stream": False}, NATIVE_CAP),
        ("/v1/chat/completions", {"messages": ASK}, ("max_tokens",)),
        ("/v1/chat/completions", {"messages": ASK, "max_completion_tokens": 5000}, ("max_tokens",)),
        ("/v1/completions", {"prompt": "hi", "stream": True}, ("max_tokens",)),
        ("/v1/messages", {"messages": ASK, "max_tokens": 32000}, ("max_tokens",)),
        ("/v1/messages", {"messages": ASK, "max_tokens": 32000, "stream": True}, ("max_tokens",)),
        ("/v1/responses", {"input": "hi"}, ("max_output_tokens",)),
        ("/v1/responses", {"input": "hi", "stream": True}, ("max_output_tokens",)),
        ("/v1/responses", {"input": "hi", "max_output_tokens": 5000}, ("max_output_tokens",)),
    ],
)
async def test_a_budget_set_or_lowered_cap_is_told(
    caller: Caller,
    session: AsyncSession,
    double: OllamaDouble,
    path: str,
    body: dict[str, object],
    cap_at: tuple[str, ...],
) -> None:
    """On every model route, streamed or not: the header names the cap Ollama was sent."""
    key = await limited_key(session, daily_tokens=100)
    headers = {"Authorization": f"Bearer {key.secret}"}

    async with caller.client.stream(
        "POST", path, json={"model": MODEL, **body}, headers=headers
    ) as response:
        await response.aread()

    assert response.status_code == 200, response.text
    cap = int(response.headers["x-neuronetz-output-cap"])
    [seen] = double.requests
    sent: Any = seen.json
    for name in cap_at:
        sent = sent[name]
    assert sent == cap < 100


async def test_a_cap_below_the_budgets_is_not_told(caller: Caller, session: AsyncSession) -> None:
    key = await limited_key(session, daily_tokens=1000)
    body = {"model": MODEL, "messages": ASK, "max_tokens": 5}

    response = await caller.client.post(
        "/v1/messages", json=body, headers={"Authorization": f"Bearer {key.secret}"}
    )
    unlimited = await caller.client.post("/v1/messages", json=body, headers=caller.auth)

    assert response.status_code == unlimited.status_code == 200
    assert "x-neuronetz-output-cap" not in response.headers
    assert "x-neuronetz-output-cap" not in unlimited.headers


@pytest.mark.parametrize(
    ("budget", "retry_after"), [("total_tokens", False), ("daily_tokens", True)]
)
async def test_retry_after_only_when_the_budget_resets(
    caller: Caller, session: AsyncSession, double: OllamaDouble, budget: str, retry_after: bool
) -> None:
    double.completion_tokens = 40
    key = await limited_key(session, **{budget: 30})
    headers = {"Authorization": f"Bearer {key.secret}"}
    body = {"model": MODEL, "messages": ASK, "max_tokens": 20}

    statuses: list[int] = []
    while 429 not in statuses and len(statuses) < 5:  # lowered caps spend it in two
        response = await caller.client.post("/v1/messages", json=body, headers=headers)
        statuses.append(response.status_code)

    assert statuses == [200, 200, 429]
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert f"{budget.removesuffix('_tokens')} token budget" in response.json()["error"]["message"]
    assert ("retry-after" in response.headers) is retry_after
