"""Proxying (REFERENCE.md §4.7): header hygiene, body limits, streaming relays, token accounting,
output caps, cancellation and upstream errors, against a running gateway and the double.
What is metered and audited runs on both backends (`BOTH_BACKENDS`)."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.doubles.ollama import OllamaDouble, count_prompt_tokens
from tests.e2e.conftest import BOTH_BACKENDS, Caller, audit_rows
from tests.support.processes import GatewayProcess
from tests.support.rawhttp import raw_request
from tests.support.stack import start_gateway

MODEL = "llama3.1:8b"


def chat(content: str = "hello there friend", **extra: object) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


# -- header hygiene ------------------------------------------------------------------


def test_upstream_sees_clean_headers(
    gateway: GatewayProcess, double: OllamaDouble, caller_secret: str
) -> None:
    response = raw_request(
        gateway.port,
        "POST",
        "/api/chat",
        headers={
            "Authorization": f"Bearer {caller_secret}",
            "Content-Type": "text/plain",
            "Cookie": "session=abc",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "for=6.6.6.6",
            "X-Real-IP": "6.6.6.6",
            "Proxy-Authorization": "Basic eA==",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "X-Secret-Hop": "must-not-pass",
            "Upgrade": "h2c",
        },
        extra_header_lines=[b"Connection: X-Secret-Hop"],
        body=orjson.dumps(chat(stream=False)),
    )
    assert response.status == 200, response.raw[:300]
    [seen] = double.requests
    names = {name.lower() for name, _ in seen.headers}
    for forbidden in (
        "authorization",
        "cookie",
        "forwarded",
        "x-forwarded-host",
        "x-real-ip",
        "proxy-authorization",
        "keep-alive",
        "te",
        "x-secret-hop",
        "upgrade",
    ):
        assert forbidden not in names, forbidden
    assert seen.header("host") == f"127.0.0.1:{double.port}"
    assert seen.header("x-forwarded-for") == "127.0.0.1"
    assert seen.header("x-request-id") == response.headers["x-request-id"]


# -- bodies --------------------------------------------------------------------------


def test_declared_oversized_body_is_413_unread(
    gateway: GatewayProcess, double: OllamaDouble, caller_secret: str
) -> None:
    response = raw_request(
        gateway.port,
        "POST",
        "/api/chat",
        headers={"Authorization": f"Bearer {caller_secret}", "Content-Length": "99999999999"},
    )
    assert response.status == 413
    assert response.headers["x-request-id"]
    assert double.requests == []


def test_actual_oversized_chunked_body_is_413(
    gateway: GatewayProcess, double: OllamaDouble, caller_secret: str
) -> None:
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(200)) + b"0\r\n\r\n"
    response = raw_request(
        gateway.port,
        "POST",
        "/api/chat",
        headers={"Authorization": f"Bearer {caller_secret}", "Transfer-Encoding": "chunked"},
        body=body,
    )
    assert response.status == 413
    assert double.requests == []


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/api/chat", b"{not json", "not valid JSON"),
        ("/api/chat", b"", "empty"),
        ("/api/chat", b"[1,2]", "JSON object"),
        ("/api/chat", b'{"messages": []}', "model is required"),
        ("/api/generate", b'{"model": 7}', "model must be a string"),
        ("/v1/chat/completions", b"{oops", "not valid JSON"),
        ("/v1/embeddings", b'{"input": "x"}', "model is required"),
    ],
)
async def test_bad_bodies_are_400_in_the_surface_shape(
    caller: Caller, double: OllamaDouble, path: str, body: bytes, fragment: str
) -> None:
    response = await caller.client.post(path, content=body, headers=caller.auth)
    assert response.status_code == 400
    error = response.json()["error"]
    message = error["message"] if path.startswith("/v1/") else error
    assert fragment in message
    assert double.requests == []


async def test_content_type_is_not_required(caller: Caller) -> None:
    response = await caller.client.post(
        "/api/chat",
        content=orjson.dumps(chat(stream=False)),
        headers={**caller.auth, "Content-Type": "text/plain"},
    )
    assert response.status_code == 200


# -- native streaming ------------------------------------------------------------------


@BOTH_BACKENDS
async def test_native_stream_is_relayed_line_by_line_and_metered(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine
) -> None:
    double.completion_tokens = 7
    request = chat("one two three four")
    async with caller.client.stream(
        "POST", "/api/chat", json=request, headers={**caller.auth, "X-Request-ID": "ndjson-1"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [orjson.loads(line) async for line in response.aiter_lines() if line]
    assert len(lines) == 8
    assert lines[-1]["done"] is True
    [row] = await audit_rows(engine, "ndjson-1")
    assert row.outcome == "ok"
    assert row.prompt_tokens == count_prompt_tokens(request) == lines[-1]["prompt_eval_count"]
    assert row.completion_tokens == 7
    assert row.model == MODEL
    assert row.key_id == caller.key.key_id


# -- OpenAI streaming ----------------------------------------------------------------------


@BOTH_BACKENDS
async def test_sse_usage_is_requested_upstream_and_dropped_when_not_asked(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "a b c"}], "stream": True}
    async with caller.client.stream(
        "POST", "/v1/chat/completions", json=body, headers={**caller.auth, "X-Request-ID": "sse-1"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = (await response.aread()).decode()
    frames = [f for f in text.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    assert '"usage"' not in text
    [seen] = double.requests
    assert isinstance(seen.json, dict)
    assert seen.json["stream_options"] == {"include_usage": True}
    [row] = await audit_rows(engine, "sse-1")
    assert row.prompt_tokens == 3
    assert row.completion_tokens == 5


async def test_sse_usage_kept_when_client_asked(caller: Caller, double: OllamaDouble) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "a b c"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await caller.client.post("/v1/chat/completions", json=body, headers=caller.auth)
    frames = [f for f in response.text.split("\n\n") if f and f != "data: [DONE]"]
    usage = orjson.loads(frames[-1].removeprefix("data: "))
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 5
    [seen] = double.requests
    assert seen.body == orjson.dumps(body)  # nothing needed changing: the original bytes


async def test_max_completion_tokens_becomes_max_tokens(
    caller: Caller, double: OllamaDouble
) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "x"}],
        "max_completion_tokens": 3,
    }
    response = await caller.client.post("/v1/chat/completions", json=body, headers=caller.auth)
    assert response.status_code == 200
    [seen] = double.requests
    assert isinstance(seen.json, dict)
    assert seen.json["max_tokens"] == 3
    assert "max_completion_tokens" not in seen.json
    assert response.json()["usage"]["completion_tokens"] == 3


# -- cancellation ------------------------------------------------------------------------


@BOTH_BACKENDS
async def test_client_disconnect_cancels_upstream_at_once(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine
) -> None:
    double.completion_tokens = 1000
    double.chunk_delay = 0.02
    async with caller.client.stream(
        "POST", "/api/chat", json=chat(), headers={**caller.auth, "X-Request-ID": "cancel-1"}
    ) as response:
        lines = response.aiter_lines()
        for _ in range(3):
            await anext(lines)
    # Leaving the block closed the connection mid-stream.
    cancelled = await asyncio.to_thread(double.wait_for_cancellation, 2.0)
    assert cancelled.chunks_sent < 100
    [row] = await audit_rows(engine, "cancel-1")
    assert row.outcome == "cancelled"
    assert row.completion_tokens >= 3


# -- upstream errors -------------------------------------------------------------------------


async def test_upstream_4xx_is_passed_sanitised(caller: Caller, double: OllamaDouble) -> None:
    double.fail_with = (400, "invalid options at /srv/ollama/options.go on 10.9.8.7:11434")
    response = await caller.client.post("/api/chat", json=chat(stream=False), headers=caller.auth)
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("invalid options at")
    assert "/srv/ollama" not in message
    assert "10.9.8.7" not in message


@BOTH_BACKENDS
@pytest.mark.parametrize("status", [500, 502])
async def test_upstream_5xx_becomes_generic_502(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine, status: int
) -> None:
    double.fail_with = (status, "CUDA error on gpu-host.internal at /opt/x")
    response = await caller.client.post(
        "/v1/chat/completions",
        json=chat(),
        headers={**caller.auth, "X-Request-ID": f"five-{status}"},
    )
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "upstream error"
    assert "gpu-host" not in response.text
    [row] = await audit_rows(engine, f"five-{status}")
    assert row.outcome == "upstream_error"


@BOTH_BACKENDS
async def test_ollamas_own_503_is_server_busy_with_retry_after(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine
) -> None:
    double.fail_with = (503, "server busy, please try again.  maximum pending requests exceeded")
    response = await caller.client.post(
        "/v1/chat/completions",
        json=chat(),
        headers={**caller.auth, "X-Request-ID": "ollama-busy"},
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "server_busy"
    assert response.json()["error"]["message"] == "server busy, retry shortly"
    [row] = await audit_rows(engine, "ollama-busy")
    assert row.outcome == "unavailable"


@BOTH_BACKENDS
async def test_mid_stream_error_is_relayed_sanitised_and_audited(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine
) -> None:
    double.mid_stream_error_after = 2
    double.error_message = "runner crashed: open /usr/lib/ollama/libggml.so at 192.168.1.4"
    response = await caller.client.post(
        "/api/generate",
        json={"model": MODEL, "prompt": "hi"},
        headers={**caller.auth, "X-Request-ID": "midstream-1"},
    )
    assert response.status_code == 200
    lines = [orjson.loads(line) for line in response.text.splitlines() if line]
    assert "error" in lines[-1]
    assert "/usr/lib" not in lines[-1]["error"]
    assert "192.168" not in lines[-1]["error"]
    [row] = await audit_rows(engine, "midstream-1")
    assert row.outcome == "upstream_error"


async def test_ollama_host_check_is_satisfied(caller: Caller, double: OllamaDouble) -> None:
    # The double answers a bare 403 to a non-local Host; a 200 proves the gateway sent
    # the upstream's own Host, not the client's.
    response = await caller.client.post(
        "/api/chat", json=chat(stream=False), headers={**caller.auth, "Host": "api.neuronetz.ai"}
    )
    assert response.status_code == 200


async def test_no_request_reaches_upstream_for_unknown_models(
    caller: Caller, double: OllamaDouble
) -> None:
    response = await caller.client.post(
        "/api/chat", json={"model": "nope:1b", "messages": []}, headers=caller.auth
    )
    assert response.status_code == 404
    assert response.json() == {"error": 'model "nope:1b" not found'}
    assert double.requests == []


async def test_http_client_can_reuse_connection(caller: Caller) -> None:
    for _ in range(3):
        response = await caller.client.post(
            "/api/chat", json=chat(stream=False), headers=caller.auth
        )
        assert response.status_code == 200


async def test_upstream_down_is_502_and_comes_back(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine, gateway: GatewayProcess
) -> None:
    double.stop()
    try:
        response = await caller.client.post(
            "/api/chat",
            json=chat(stream=False),
            headers={**caller.auth, "X-Request-ID": "down-1"},
        )
        # The only server is now ejected: refused at once until a probe finds it again.
        ejected = await caller.client.post(
            "/api/chat", json=chat(stream=False), headers=caller.auth
        )
    finally:
        double.start()
    assert response.status_code == 502
    assert response.json() == {"error": "upstream unavailable"}
    assert "127.0.0.1" not in response.text
    assert ejected.status_code == 503
    assert int(ejected.headers["retry-after"]) >= 1
    [row] = await audit_rows(engine, "down-1")
    assert row.outcome == "upstream_error"
    readmitted = await asyncio.to_thread(gateway.wait_for_log, "upstream_readmitted", 15.0)
    assert readmitted is not None
    again = await caller.client.post("/api/chat", json=chat(stream=False), headers=caller.auth)
    assert again.status_code == 200


async def test_upstream_timeout_is_504(
    database_url: str, double: OllamaDouble, caller: Caller
) -> None:
    impatient = await asyncio.to_thread(
        start_gateway, database_url, double, {"UPSTREAM_READ_TIMEOUT_SECONDS": "0.5"}
    )
    try:
        double.hang = True
        async with httpx.AsyncClient(base_url=impatient.base_url, timeout=10) as client:
            response = await client.post("/v1/chat/completions", json=chat(), headers=caller.auth)
        assert response.status_code == 504
        assert response.json()["error"]["message"] == "upstream timed out"
    finally:
        double.hang = False
        await asyncio.to_thread(impatient.stop)
