"""OpenTelemetry traces end to end: a gateway process exporting over OTLP/HTTP (the SDK's
real exporter) to a receiver started by the test, with the Ollama double upstream.

The gateway trusts 127.0.0.1 as a proxy (`TRUSTED_PROXY_IPS`); requests from 127.0.0.2
come from an untrusted peer. Every test finds its trace by the gateway's request id
(`X-Gateway-Request-ID`) and asserts the span tree, the attributes, the trace context
Ollama received, and that no prompt, response or key is in anything exported.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest

from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import Backend, Caller
from tests.support.otlp_receiver import (
    CLIENT_KIND,
    INTERNAL_KIND,
    SERVER_KIND,
    STATUS_ERROR,
    OtlpReceiver,
    ReceivedSpan,
    otlp_receiver,
)
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway

MODEL = "llama3.1:8b"
UNTRUSTED_ADDRESS = "127.0.0.2"
SERVICE_NAME = "gateway-under-test"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    backend: Backend, double: OllamaDouble, receiver: OtlpReceiver
) -> Iterator[GatewayProcess]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-token=t0ken",
        "OTEL_SERVICE_NAME": SERVICE_NAME,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "TRUSTED_PROXY_IPS": "127.0.0.1/32",
    }
    process = start_gateway(backend.database_url, double, env)
    assert process.wait_for_log("tracing_enabled", timeout=5) is not None
    yield process
    process.stop()


@pytest.fixture
async def untrusted(gateway: GatewayProcess) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose connections come from 127.0.0.2, not a trusted proxy."""
    transport = httpx.AsyncHTTPTransport(local_address=UNTRUSTED_ADDRESS)
    async with httpx.AsyncClient(
        base_url=gateway.base_url, transport=transport, timeout=10
    ) as client:
        yield client


def _children(spans: list[ReceivedSpan], root: ReceivedSpan) -> dict[str, ReceivedSpan]:
    children = [span for span in spans if span.parent_span_id == root.span_id]
    by_name = {span.name: span for span in children}
    assert len(by_name) == len(children), [span.name for span in children]
    return by_name


async def _root(receiver: OtlpReceiver, response: httpx.Response) -> ReceivedSpan:
    request_id = response.headers["x-gateway-request-id"]
    return await asyncio.to_thread(receiver.root_of, request_id)


def _traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


def _context_sent(traceparent: str | None) -> tuple[str, str]:
    """(trace id, parent span id) of a sampled `traceparent` Ollama received."""
    assert traceparent is not None
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    assert int(flags, 16) & 1
    return trace_id, span_id


def _assert_nothing_secret(receiver: OtlpReceiver, *texts: str) -> None:
    """No exported byte sequence (any span, attribute, resource) holds any of `texts`."""
    exported = receiver.everything().lower()
    assert exported
    for text in texts:
        assert text.lower().encode() not in exported, text
    for span in receiver.spans:
        values = orjson.dumps([span.attributes, span.resource, span.name]).decode().lower()
        assert not any(text.lower() in values for text in texts)


async def test_streamed_chat_is_one_trace_with_stages_and_genai_attributes(
    gateway: GatewayProcess, double: OllamaDouble, receiver: OtlpReceiver, caller: Caller
) -> None:
    prompt = f"tell nobody about the {uuid.uuid4().hex} plan"
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True}
    async with caller.client.stream("POST", "/api/chat", json=body, headers=caller.auth) as r:
        assert r.status_code == 200
        chunks = [orjson.loads(line) async for line in r.aiter_lines() if line]
    answer = "".join(chunk["message"]["content"] for chunk in chunks if "message" in chunk)
    final = chunks[-1]
    assert final["done"] is True
    assert answer

    root = await _root(receiver, r)
    spans = receiver.trace(root.trace_id)
    assert root.kind == SERVER_KIND
    assert root.parent_span_id == ""
    assert root.name == "POST /api/chat"
    assert root.scope == "neuronetz_gateway"
    assert root.resource["service.name"] == SERVICE_NAME
    attributes = root.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "ollama"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.usage.input_tokens"] == final["prompt_eval_count"]
    assert attributes["gen_ai.usage.output_tokens"] == final["eval_count"] == 5
    assert attributes["neuronetz.tenant"] == caller.key.tenant_name
    assert attributes["neuronetz.key_prefix"] == caller.key.prefix
    assert attributes["neuronetz.request_id"] == r.headers["x-gateway-request-id"]
    assert attributes["neuronetz.outcome"] == "ok"
    assert attributes["http.response.status_code"] == 200
    assert attributes["http.route"] == "/api/chat"
    assert "error.type" not in attributes

    stages = _children(spans, root)
    assert list(stages) == ["auth", "admission", "queue_wait", "upstream", "relay"]
    kinds = [stages[name].kind for name in stages]
    assert kinds == [INTERNAL_KIND] * 3 + [CLIENT_KIND] + [INTERNAL_KIND]
    ordered = list(stages.values())
    for earlier, later in itertools.pairwise(ordered):
        assert earlier.end_ns <= later.start_ns, (earlier.name, later.name)
    assert root.start_ns <= ordered[0].start_ns
    assert ordered[-1].end_ns <= root.end_ns
    upstream = stages["upstream"]
    assert upstream.attributes["gen_ai.request.model"] == MODEL
    assert upstream.attributes["http.response.status_code"] == 200
    assert upstream.attributes["server.port"] == double.port
    assert all(span.status_code != STATUS_ERROR for span in spans)

    # Ollama received the upstream span's context, and the client's request nothing else.
    (seen,) = double.requests
    assert _context_sent(seen.header("traceparent")) == (root.trace_id, upstream.span_id)
    assert receiver.headers[-1]["x-collector-token"] == "t0ken"
    _assert_nothing_secret(receiver, prompt, caller.key.secret, answer)


async def test_traceparent_of_a_trusted_proxy_continues_its_trace(
    gateway: GatewayProcess, double: OllamaDouble, receiver: OtlpReceiver, caller: Caller
) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    headers = {**caller.auth, "traceparent": _traceparent(trace_id, parent_id)}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    response = await caller.client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200

    root = await _root(receiver, response)
    assert (root.trace_id, root.parent_span_id) == (trace_id, parent_id)
    assert root.name == "POST /v1/chat/completions"
    upstream = _children(receiver.trace(trace_id), root)["upstream"]
    (seen,) = double.requests
    assert _context_sent(seen.header("traceparent")) == (trace_id, upstream.span_id)


async def test_traceparent_from_an_untrusted_peer_is_ignored(
    gateway: GatewayProcess,
    double: OllamaDouble,
    receiver: OtlpReceiver,
    caller: Caller,
    untrusted: httpx.AsyncClient,
) -> None:
    forged_trace, forged_parent = secrets.token_hex(16), secrets.token_hex(8)
    headers = {
        **caller.auth,
        "traceparent": _traceparent(forged_trace, forged_parent),
        "tracestate": "vendor=forged",
    }
    body = {"model": MODEL, "prompt": "hi", "stream": False}
    response = await untrusted.post("/api/generate", json=body, headers=headers)
    assert response.status_code == 200

    root = await _root(receiver, response)
    assert root.attributes["client.address"] == UNTRUSTED_ADDRESS
    assert root.trace_id != forged_trace
    assert root.parent_span_id == ""
    assert root.attributes["gen_ai.operation.name"] == "text_completion"
    upstream = _children(receiver.trace(root.trace_id), root)["upstream"]
    (seen,) = double.requests
    assert _context_sent(seen.header("traceparent")) == (root.trace_id, upstream.span_id)
    assert seen.header("tracestate") is None
    assert forged_trace.encode() not in receiver.everything()


async def test_cancelled_stream_ends_every_span_as_cancelled(
    gateway: GatewayProcess, double: OllamaDouble, receiver: OtlpReceiver, caller: Caller
) -> None:
    double.completion_tokens, double.chunk_delay = 1000, 0.02
    body = {"model": MODEL, "messages": [{"role": "user", "content": "long story"}]}
    async with caller.client.stream("POST", "/api/chat", json=body, headers=caller.auth) as r:
        lines = r.aiter_lines()
        for _ in range(3):
            await anext(lines)
    await asyncio.to_thread(double.wait_for_cancellation)

    root = await _root(receiver, r)
    assert root.attributes["neuronetz.outcome"] == "cancelled"
    assert root.attributes["error.type"] == "cancelled"
    assert root.attributes["http.response.status_code"] == 200
    assert 3 <= root.attributes["gen_ai.usage.output_tokens"] < 1000
    stages = _children(receiver.trace(root.trace_id), root)
    assert list(stages) == ["auth", "admission", "queue_wait", "upstream", "relay"]
    assert stages["relay"].attributes["error.type"] == "cancelled"
    assert stages["relay"].status_code == STATUS_ERROR
    assert "error.type" not in stages["upstream"].attributes


async def test_refused_key_is_traced_without_the_key(
    gateway: GatewayProcess, double: OllamaDouble, receiver: OtlpReceiver, caller: Caller
) -> None:
    wrong = caller.key.secret[:-4] + "abcd"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    response = await caller.client.post(
        "/api/chat", json=body, headers={"Authorization": f"Bearer {wrong}"}
    )
    assert response.status_code == 401

    root = await _root(receiver, response)
    assert root.attributes["neuronetz.outcome"] == "auth_failed"
    assert root.attributes["http.response.status_code"] == 401
    assert "neuronetz.tenant" not in root.attributes
    stages = _children(receiver.trace(root.trace_id), root)
    assert list(stages) == ["auth"]
    assert stages["auth"].attributes["error.type"] == "auth_failed"
    assert double.requests == []
    _assert_nothing_secret(receiver, wrong, caller.key.secret)


async def test_an_upstream_failure_marks_the_upstream_span_and_the_request(
    gateway: GatewayProcess, double: OllamaDouble, receiver: OtlpReceiver, caller: Caller
) -> None:
    double.fail_with = (500, "model runner crashed at /var/lib/ollama")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    response = await caller.client.post("/api/chat", json=body, headers=caller.auth)
    assert response.status_code == 502

    root = await _root(receiver, response)
    assert root.attributes["neuronetz.outcome"] == "upstream_error"
    assert root.attributes["error.type"] == "upstream_error"
    assert root.status_code == STATUS_ERROR
    stages = _children(receiver.trace(root.trace_id), root)
    assert list(stages) == ["auth", "admission", "queue_wait", "upstream"]  # nothing relayed
    upstream = stages["upstream"]
    assert upstream.attributes["http.response.status_code"] == 500
    assert upstream.attributes["error.type"] == "500"
    assert upstream.status_code == STATUS_ERROR
    _assert_nothing_secret(receiver, "/var/lib/ollama", "model runner crashed")
