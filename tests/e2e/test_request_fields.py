"""What a request may ask of the shared Ollama (docs/REFERENCE.md §11), against a running
gateway and the Ollama double, which reads bodies as Ollama's Go decoder does.

One meaning per body (repeated keys in any case refused and named, fields found in any
spelling Go matches, the depth cap before admission); server state stays the
operator's (keep_alive, runner options, _debug_render_only removed and named); no way
out to the internet (web tools removed); bodies only as sent (415)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.proxy.shapes import RUNNER_OPTIONS
from tests.doubles.ollama import OllamaDouble, RecordedRequest
from tests.e2e.conftest import Caller, limited_key
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway

MODEL = "llama3.1:8b"
OTHER = "qwen2.5:0.5b"
IGNORED = "x-neuronetz-ignored-fields"


@pytest.fixture(scope="module")
def passing(database_url: str, double: OllamaDouble) -> Iterator[GatewayProcess]:
    """A gateway for one tenant: runtime options and web tools pass."""
    env = {"CLIENT_RUNTIME_OPTIONS": "pass", "ALLOW_WEB_TOOLS": "true"}
    process = start_gateway(database_url, double, env)
    yield process
    process.stop()


async def post(caller: Caller, path: str, raw: bytes, **headers: str) -> httpx.Response:
    return await caller.client.post(path, content=raw, headers={**caller.auth, **headers})


def sent(seen: RecordedRequest) -> dict[str, Any]:
    """The JSON body the double received."""
    assert isinstance(seen.json, dict)
    return seen.json


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}


# -- one meaning per body --------------------------------------------------------------

# Each example of a body the gateway read one way and Ollama another, and the key named.
AMBIGUOUS = [
    (
        "/api/generate",
        b'{"model":"llama3.1:8b","Model":"qwen2.5:0.5b","prompt":"hi"}',
        "Model",
    ),
    (
        "/api/chat",
        b'{"model":"llama3.1:8b","options":{"num_predict":5},"Options":{"num_predict":100000}}',
        "Options",
    ),
    (
        "/v1/chat/completions",
        b'{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}],'
        b'"max_tokens":5,"MAX_TOKENS":100000}',
        "MAX_TOKENS",
    ),
    ("/api/chat", b'{"model":"llama3.1:8b","stream":false,"Stream":true}', "Stream"),
    (
        "/v1/chat/completions",
        b'{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}],"stream":true,'
        b'"stream_options":{"include_usage":true,"Include_usage":false}}',
        "stream_options.Include_usage",
    ),
    ("/v1/completions", b'{"model":"llama3.1:8b","model":"qwen2.5:0.5b","prompt":"x"}', "model"),
    (
        "/api/generate",
        '{"model":"llama3.1:8b","keep_alive":"5m","\u212aeep_alive":0}'.encode(),
        "\u212aeep_alive",
    ),
]


@pytest.mark.parametrize(("path", "raw", "key"), AMBIGUOUS)
async def test_a_body_with_two_meanings_is_refused_naming_the_key(
    caller: Caller, double: OllamaDouble, path: str, raw: bytes, key: str
) -> None:
    response = await post(caller, path, raw)
    assert response.status_code == 400
    assert response.headers["x-request-id"]
    expected = f'the key "{key}" more than once'
    if path.startswith("/v1/"):
        error = response.json()["error"]
        assert expected in error["message"]
        assert error["param"] == key
        assert error["type"] == "invalid_request_error"
    else:
        assert expected in response.json()["error"]
    assert double.requests == []


# A body for each route that reads one, with a key repeated in another spelling inside
# a nested object; the shape of the error body each surface answers in.
EVERY_SURFACE = [
    ("/api/generate", {"model": MODEL, "prompt": "hi"}, "native"),
    ("/api/chat", chat(), "native"),
    ("/api/embed", {"model": MODEL, "input": "hi"}, "native"),
    ("/api/embeddings", {"model": MODEL, "prompt": "hi"}, "native"),
    ("/api/show", {"model": MODEL}, "native"),
    ("/v1/chat/completions", chat(), "openai"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi"}, "openai"),
    ("/v1/embeddings", {"model": MODEL, "input": "hi"}, "openai"),
    ("/v1/responses", {"model": MODEL, "input": "hi"}, "openai"),
    ("/v1/messages", {**chat(), "max_tokens": 5}, "anthropic"),
    ("/v1/messages/count_tokens", chat(), "anthropic"),
]


def message_of(shape: str, body: Any) -> str:
    """The error message of an error body, checking it has `shape`'s form."""
    if shape == "native":
        assert set(body) == {"error"}
        return str(body["error"])
    if shape == "anthropic":
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        return str(body["error"]["message"])
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "metadata.Tag"
    return str(body["error"]["message"])


@pytest.mark.parametrize(("path", "body", "shape"), EVERY_SURFACE)
async def test_every_surface_refuses_a_repeated_key_in_its_own_shape(
    caller: Caller, double: OllamaDouble, path: str, body: dict[str, Any], shape: str
) -> None:
    raw = orjson.dumps({**body, "metadata": {"tag": "a", "Tag": "b"}})
    response = await post(caller, path, raw)
    assert response.status_code == 400
    assert response.headers["x-request-id"]
    message = message_of(shape, response.json())
    assert 'the key "metadata.Tag" more than once' in message
    assert '"tag" and "Tag" are the same key' in message
    assert double.requests == []


async def test_a_lone_case_variant_is_the_field_ollama_reads(
    caller: Caller, double: OllamaDouble
) -> None:
    raw = '{"Model":"qwen2.5:0.5b","Messages":[{"role":"user","content":"hi"}],"\u017ftream":false}'
    response = await post(caller, "/api/chat", raw.encode())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")  # not a stream
    [seen] = double.requests
    assert seen.decision.model == OTHER
    assert seen.decision.stream is False


@pytest.mark.parametrize(
    ("path", "field"),
    [("/api/generate", "Prompt"), ("/api/embed", "Input"), ("/api/chat", "Messages")],
)
async def test_prompt_text_counts_in_any_spelling(
    caller: Caller, session: AsyncSession, double: OllamaDouble, path: str, field: str
) -> None:
    """A 600-byte prompt is a 200-token estimate: more than a 100-token budget holds."""
    key = await limited_key(session, key={"daily_tokens": 100})
    text = "x" * 600
    value: Any = [{"role": "user", "Content": text}] if field == "Messages" else text
    raw = orjson.dumps({"model": MODEL, field: value, "stream": False})
    response = await caller.client.post(
        path, content=raw, headers={"Authorization": f"Bearer {key.secret}"}
    )
    assert response.status_code == 429
    assert "budget" in response.json()["error"]
    assert double.requests == []


async def test_the_budget_cap_goes_into_the_key_the_client_used(
    caller: Caller, session: AsyncSession, double: OllamaDouble
) -> None:
    key = await limited_key(session, key={"daily_tokens": 1000})
    headers = {"Authorization": f"Bearer {key.secret}"}
    body = {"model": MODEL, "prompt": "hi", "stream": False, "Options": {"temperature": 0}}
    native = await caller.client.post("/api/generate", json=body, headers=headers)
    body = {**chat(), "MAX_TOKENS": 100_000}
    openai = await caller.client.post("/v1/chat/completions", json=body, headers=headers)
    assert (native.status_code, openai.status_code) == (200, 200)
    first, second = double.requests
    assert set(sent(first)) == {"model", "prompt", "stream", "Options"}
    assert sent(first)["Options"]["temperature"] == 0
    assert 0 < sent(first)["Options"]["num_predict"] < 1000
    assert first.decision.cap == sent(first)["Options"]["num_predict"]
    assert "max_tokens" not in sent(second)
    assert 0 < sent(second)["MAX_TOKENS"] < 1000
    assert second.decision.cap == sent(second)["MAX_TOKENS"]


@pytest.mark.parametrize("levels", [1000, 300])
async def test_deep_bodies_are_refused_before_admission(
    caller: Caller, session: AsyncSession, double: OllamaDouble, levels: int
) -> None:
    key = await limited_key(session, key={"rpm": 1})
    headers = {"Authorization": f"Bearer {key.secret}"}
    deep = b'{"model":"llama3.1:8b","messages":' + b"[" * levels + b"]" * levels + b"}"
    for path in ("/api/chat", "/v1/chat/completions"):
        response = await caller.client.post(path, content=deep, headers=headers)
        assert response.status_code == 400
        assert "nested too deeply (limit 64 levels)" in response.text
    # The one request of this minute is still there: nothing was admitted.
    admitted = await caller.client.post("/api/chat", json=chat(stream=False), headers=headers)
    assert admitted.status_code == 200
    assert len(double.requests) == 1


# -- server state stays the operator's -----------------------------------------------

RUNTIME_FIELDS = [("keep_alive", 0), ("_debug_render_only", True)] + [
    (f"options.{name}", False if name in ("use_mmap", "use_mlock", "numa") else 1)
    for name in sorted(RUNNER_OPTIONS)
]


def with_field(body: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    if dotted.startswith("options."):
        return {**body, "options": {"temperature": 0.1, dotted.removeprefix("options."): value}}
    return {**body, dotted: value}


@pytest.mark.parametrize(("field", "value"), RUNTIME_FIELDS)
async def test_each_runtime_field_is_removed_and_named(
    caller: Caller, double: OllamaDouble, field: str, value: Any
) -> None:
    body = with_field(chat(stream=False), field, value)
    response = await post(caller, "/api/chat", orjson.dumps(body))
    assert response.status_code == 200
    assert response.headers[IGNORED] == field
    [seen] = double.requests
    assert field.removeprefix("options.") not in sent(seen).get("options", {})
    assert field not in sent(seen)
    assert seen.decision.keep_alive is False
    assert seen.decision.debug_render_only is False


async def test_runtime_fields_in_other_spellings_are_removed_too(
    caller: Caller, double: OllamaDouble
) -> None:
    raw = orjson.dumps(chat(stream=False, Keep_Alive=-1, OPTIONS={"num_gpu": 0, "NUM_CTX": 8}))
    response = await post(caller, "/api/chat", raw)
    assert response.headers[IGNORED] == "keep_alive, options.num_gpu, options.num_ctx"
    [seen] = double.requests
    assert sent(seen)["OPTIONS"] == {}
    assert "Keep_Alive" not in sent(seen)


async def test_with_pass_runtime_fields_arrive_unchanged(
    passing: GatewayProcess, caller: Caller, double: OllamaDouble
) -> None:
    options = dict.fromkeys(sorted(RUNNER_OPTIONS), 1)
    raw = orjson.dumps(chat(stream=False, keep_alive=-1, _debug_render_only=False, options=options))
    async with httpx.AsyncClient(base_url=passing.base_url) as client:
        response = await client.post("/api/chat", content=raw, headers=caller.auth)
    assert response.status_code == 200
    assert IGNORED not in response.headers
    [seen] = double.requests
    assert seen.body == raw
    assert seen.decision.keep_alive is True


# -- no way out to the internet --------------------------------------------------------

WEB_TOOLS = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
    {"type": "web_search"},
    {"type": "web_fetch"},
]


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_web_tools_are_removed_and_the_rest_is_served(
    caller: Caller, double: OllamaDouble, path: str
) -> None:
    response = await post(caller, path, orjson.dumps(chat(stream=False, tools=WEB_TOOLS)))
    assert response.status_code == 200
    assert response.headers[IGNORED] == "tools.web_search, tools.web_fetch"
    [seen] = double.requests
    assert sent(seen)["tools"] == WEB_TOOLS[:1]
    assert seen.decision.tools == ("function",)


async def test_web_tools_pass_when_allowed(
    passing: GatewayProcess, caller: Caller, double: OllamaDouble
) -> None:
    async with httpx.AsyncClient(base_url=passing.base_url) as client:
        response = await client.post(
            "/api/chat", json=chat(stream=False, tools=WEB_TOOLS), headers=caller.auth
        )
    assert response.status_code == 200
    [seen] = double.requests
    assert seen.decision.tools == ("function", "web_search", "web_fetch")


# -- bodies as sent ------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "br, identity", "GZIP"])
@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/api/chat", "native"),
        ("/v1/chat/completions", "openai"),
        ("/v1/responses", "openai"),
        ("/v1/messages", "anthropic"),
    ],
)
async def test_compressed_bodies_are_415(
    caller: Caller, double: OllamaDouble, path: str, shape: str, encoding: str
) -> None:
    response = await post(caller, path, orjson.dumps(chat()), **{"Content-Encoding": encoding})
    assert response.status_code == 415
    assert response.headers["x-request-id"]
    body = response.json()
    if shape == "anthropic":
        assert body["type"] == "error"
    message = body["error"] if shape == "native" else body["error"]["message"]
    assert "uncompressed" in message
    assert double.requests == []


async def test_identity_encoding_is_served(caller: Caller, double: OllamaDouble) -> None:
    raw = orjson.dumps(chat(stream=False))
    response = await post(caller, "/api/chat", raw, **{"Content-Encoding": "identity"})
    assert response.status_code == 200
    assert len(double.requests) == 1
