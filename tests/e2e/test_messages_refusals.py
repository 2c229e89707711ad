"""`/v1/messages` refusals and failures (docs/REFERENCE.md §12): every one in Anthropic's
error shape and the `anthropic` SDK's error class, refused before Ollama where the
gateway can tell, audited with the true outcome."""

from __future__ import annotations

import anthropic
import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import Caller, audit_rows, limited_key
from tests.support.processes import GatewayProcess
from tests.support.rawhttp import raw_request

MODEL = "llama3.1:8b"
ASK: list[anthropic.types.MessageParam] = [{"role": "user", "content": "why is the sky blue"}]


def test_errors_map_to_the_sdks_classes(gateway: GatewayProcess, caller: Caller) -> None:
    claude = anthropic.Anthropic(
        base_url=gateway.base_url, api_key=caller.key.secret, max_retries=0
    )
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="ghost:1b", max_tokens=5, messages=ASK)
    claude.close()
    wrong = anthropic.Anthropic(base_url=gateway.base_url, api_key="nz_wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        wrong.messages.create(model=MODEL, max_tokens=5, messages=ASK)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid API key"},
    }


async def test_rate_limit_is_the_sdks_rate_limit_error(
    gateway: GatewayProcess, session: AsyncSession
) -> None:
    key = await limited_key(session, key={"rpm": 1})
    client = anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key=key.secret, max_retries=0)

    await client.messages.create(model=MODEL, max_tokens=5, messages=ASK)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model=MODEL, max_tokens=5, messages=ASK)
    await client.close()

    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]  # a dict here
    assert "requests per minute" in caught.value.message
    assert int(caught.value.response.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("cap", "message"),
    [
        (None, "max_tokens is required and must be a positive integer"),
        (0, "max_tokens is required and must be a positive integer"),
        (-5, "max_tokens is required and must be a positive integer"),
        ("32", "max_tokens must be an integer"),
        (1.5, "max_tokens must be an integer"),
    ],
)
async def test_max_tokens_is_required_as_anthropic_requires_it(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine, cap: object, message: str
) -> None:
    body: dict[str, object] = {"model": MODEL, "messages": ASK}
    if cap is not None:
        body["max_tokens"] = cap
    request_id = f"msg-cap-{type(cap).__name__}-{cap}".replace(".", "_")

    response = await caller.client.post(
        "/v1/messages", json=body, headers={**caller.auth, "X-Request-ID": request_id}
    )

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
    }
    assert double.requests == []
    [row] = await audit_rows(engine, request_id)
    assert (row.route, row.outcome, row.status_code) == ("/v1/messages", "client_error", 400)


async def test_a_request_without_max_tokens_costs_no_rpm(
    gateway: GatewayProcess, session: AsyncSession
) -> None:
    key = await limited_key(session, key={"rpm": 1})
    headers = {"x-api-key": key.secret}
    body = {"model": MODEL, "messages": ASK}

    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        refused = await client.post("/v1/messages", json=body, headers=headers)
        served = await client.post("/v1/messages", json={**body, "max_tokens": 5}, headers=headers)

    assert (refused.status_code, served.status_code) == (400, 200)


async def test_a_stream_cut_off_upstream_ends_with_an_error_event(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine
) -> None:
    double.mid_stream_error_after = 2
    body = {"model": MODEL, "max_tokens": 50, "messages": ASK, "stream": True}

    response = await caller.client.post(
        "/v1/messages", json=body, headers={**caller.auth, "X-Request-ID": "msg-cut"}
    )

    frames = response.text.split("\n\n")
    assert frames[-2].startswith("event: error\ndata: ")
    assert '"type":"api_error"' in frames[-2]
    assert "event: message_stop" not in response.text
    [row] = await audit_rows(engine, "msg-cut")
    assert (row.route, row.outcome, row.completion_tokens) == ("/v1/messages", "upstream_error", 2)


async def test_non_streamed_upstream_failure_is_an_anthropic_error(
    caller: Caller, double: OllamaDouble
) -> None:
    double.fail_with = (500, "llama runner process has terminated: exit status 2")
    body = {"model": MODEL, "max_tokens": 50, "messages": ASK}

    response = await caller.client.post("/v1/messages", json=body, headers=caller.auth)

    assert response.status_code == 502
    assert response.json() == {
        "type": "error",
        "error": {"type": "api_error", "message": "upstream error"},
    }


async def test_key_in_x_api_key_or_bearer_or_both(caller: Caller) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": ASK}
    secret = caller.key.secret

    bearer = await caller.client.post("/v1/messages", json=body, headers=caller.auth)
    both = await caller.client.post(
        "/v1/messages", json=body, headers={**caller.auth, "x-api-key": secret}
    )
    native = await caller.client.get("/api/tags", headers={"x-api-key": secret})

    assert [bearer.status_code, both.status_code, native.status_code] == [200, 200, 200]


@pytest.mark.parametrize(
    ("method", "headers", "content", "status", "kind"),
    [
        ("GET", {}, b"", 405, "invalid_request_error"),
        ("POST", {"content-encoding": "gzip"}, b"\x1f\x8b", 415, "invalid_request_error"),
        ("POST", {}, b'{"model": 7}', 400, "invalid_request_error"),
    ],
    ids=["405", "415", "400"],
)
async def test_refusals_are_in_anthropics_shape(
    caller: Caller,
    double: OllamaDouble,
    method: str,
    headers: dict[str, str],
    content: bytes,
    status: int,
    kind: str,
) -> None:
    response = await caller.client.request(
        method, "/v1/messages", content=content, headers={**caller.auth, **headers}
    )

    assert response.status_code == status
    body = response.json()
    assert set(body) == {"type", "error"}
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert response.headers["x-request-id"]
    assert double.requests == []


async def test_an_upstream_refusal_is_relayed_sanitised_in_anthropics_shape(
    caller: Caller, double: OllamaDouble
) -> None:
    double.fail_with = (400, "invalid tool schema at /srv/ollama/tools.go on 10.9.8.7:11434")
    body = {"model": MODEL, "max_tokens": 50, "messages": ASK}

    response = await caller.client.post("/v1/messages", json=body, headers=caller.auth)

    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith("invalid tool schema at")
    assert "/srv/ollama" not in response.text
    assert "10.9.8.7" not in response.text


def test_a_body_too_large_is_413_in_anthropics_shape(
    gateway: GatewayProcess, double: OllamaDouble, caller: Caller
) -> None:
    headers = {"x-api-key": caller.key.secret, "Content-Length": "99999999999"}

    response = raw_request(gateway.port, "POST", "/v1/messages?beta=true", headers=headers)

    assert response.status == 413
    body = orjson.loads(response.body)
    assert body["type"] == "error"
    assert body["error"]["type"] == "request_too_large"
    assert double.requests == []
