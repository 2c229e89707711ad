"""`/v1/responses` through the gateway (docs/REFERENCE.md §12), driven by the official
`openai` SDK: `responses.create` with and without streaming, a function tool, the SDK's
error classes; Codex's request shape with its `accept-encoding`; the audit rows carry
Ollama's counts."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import httpx
import openai
import orjson
import pytest
from aiohttp import web
from openai.types.responses import FunctionToolParam, Response
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import Caller, audit_rows, limited_key
from tests.support.client_requests import codex_request
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway

MODEL = "llama3.1:8b"
WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "the weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": None,
}


@pytest.fixture
async def oai(gateway: GatewayProcess, caller: Caller) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=caller.key.secret, max_retries=0
    )
    yield client
    await client.close()


def rid(name: str) -> dict[str, str]:
    return {"X-Request-ID": name}


async def audited(engine: AsyncEngine, request_id: str) -> tuple[str, str, int, int]:
    [row] = await audit_rows(engine, request_id)
    return row.route, row.outcome, row.prompt_tokens, row.completion_tokens


async def test_create_is_answered_and_audited(
    oai: openai.AsyncOpenAI, engine: AsyncEngine, double: OllamaDouble
) -> None:
    response = await oai.responses.create(
        model=MODEL, instructions="be brief", input="one two three", extra_headers=rid("rs-1")
    )

    assert response.output_text == "tok0 tok1 tok2 tok3 tok4 "
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 5)
    assert await audited(engine, "rs-1") == ("/v1/responses", "ok", 5, 5)
    [seen] = double.requests
    assert seen.path == "/v1/responses"
    assert seen.header("authorization") is None


async def test_stream_is_audited_from_response_completed(
    oai: openai.AsyncOpenAI, engine: AsyncEngine
) -> None:
    stream = await oai.responses.create(
        model=MODEL, input="one two", max_output_tokens=3, stream=True, extra_headers=rid("rs-2")
    )
    events = [event async for event in stream]

    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["tok0 ", "tok1 ", "tok2 "]
    assert events[-1].type == "response.completed"
    assert await audited(engine, "rs-2") == ("/v1/responses", "ok", 2, 3)


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_function_tool(
    oai: openai.AsyncOpenAI, engine: AsyncEngine, streamed: bool
) -> None:
    request_id = f"rs-tool-{streamed}"
    response: Response
    if streamed:
        async with oai.responses.stream(
            model=MODEL,
            input="weather in Paris",
            tools=[WEATHER],
            tool_choice="required",
            extra_headers=rid(request_id),
        ) as stream:
            response = await stream.get_final_response()
    else:
        response = await oai.responses.create(
            model=MODEL,
            input="weather in Paris",
            tools=[WEATHER],
            tool_choice="required",
            extra_headers=rid(request_id),
        )

    [call] = response.output
    assert call.type == "function_call"
    assert (call.name, orjson.loads(call.arguments)) == ("get_weather", {"city": "tok0"})
    assert await audited(engine, request_id) == ("/v1/responses", "ok", 3, 5)


async def test_errors_map_to_the_sdks_classes(
    gateway: GatewayProcess, oai: openai.AsyncOpenAI, session: AsyncSession
) -> None:
    with pytest.raises(openai.NotFoundError):
        await oai.responses.create(model="ghost:1b", input="hi")
    wrong = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key="nz_x", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await wrong.responses.create(model=MODEL, input="hi")
    key = await limited_key(session, key={"rpm": 1})
    limited = openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=key.secret, max_retries=0
    )
    await limited.responses.create(model=MODEL, input="hi")
    with pytest.raises(openai.RateLimitError) as caught:
        await limited.responses.create(model=MODEL, input="hi")
    for client in (wrong, limited):
        await client.close()

    assert caught.value.code == "rate_limit_exceeded"


async def test_codexs_request_gets_an_uncompressed_stream(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine
) -> None:
    """Codex asks for zstd or gzip; the gateway asks Ollama for identity and relays an
    event stream it read and counted."""
    request = codex_request(MODEL, "say hi", caller.key.secret)
    headers = {**request.headers, "X-Request-ID": "codex"}

    response = await caller.client.post(request.path, json=request.body, headers=headers)

    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.rstrip().split("\n\n")[-1].startswith("event: response.completed")
    [seen] = double.requests
    assert seen.header("accept-encoding") == "identity"
    # Ollama would search the web for a web_search tool: it is removed, and said so.
    assert response.headers["x-neuronetz-ignored-fields"] == "tools.web_search"
    assert isinstance(seen.json, dict)
    assert "web_search" not in [tool["type"] for tool in seen.json["tools"]]
    assert len(seen.json["tools"]) == len(request.body["tools"]) - 1
    route, outcome, _, completion = await audited(engine, "codex")
    assert (route, outcome, completion) == ("/v1/responses", "ok", 5)


async def test_a_stream_cut_off_upstream_ends_with_response_failed(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine
) -> None:
    double.mid_stream_error_after = 1
    body = {"model": MODEL, "input": "hi", "stream": True}

    response = await caller.client.post(
        "/v1/responses", json=body, headers={**caller.auth, "X-Request-ID": "rs-cut"}
    )

    last = response.text.rstrip().split("\n\n")[-1]
    assert last.startswith("event: response.failed\ndata: ")
    failed = orjson.loads(last.split("data: ", 1)[1])
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {
        "code": "upstream_error",
        "message": "upstream connection lost",
    }
    route, outcome, _, completion = await audited(engine, "rs-cut")
    assert (route, outcome, completion) == ("/v1/responses", "upstream_error", 1)


@dataclass
class GzippingUpstream:
    url: str
    asked: list[str | None]  # the Accept-Encoding of each model request it received


@pytest.fixture
async def gzipping(double: OllamaDouble) -> AsyncIterator[GzippingUpstream]:
    """A proxy in front of the double that gzips model answers whatever was asked for,
    as a misconfigured proxy between the gateway and Ollama could."""
    asked: list[str | None] = []

    async def relay(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            upstream = await session.request(
                request.method,
                double.base_url + request.path,
                data=await request.read(),
                headers={"content-type": "application/json"},
            )
            body = await upstream.read()
        response = web.Response(status=upstream.status, body=body)
        response.content_type = upstream.content_type
        if request.path != "/api/tags":
            asked.append(request.headers.get("accept-encoding"))
            response.body = gzip.compress(body)
            response.headers["Content-Encoding"] = "gzip"
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield GzippingUpstream(f"http://{host}:{port}", asked)
    await runner.cleanup()


async def test_a_compressed_upstream_answer_is_never_relayed(
    gzipping: GzippingUpstream, caller: Caller, database_url: str, double: OllamaDouble
) -> None:
    # Started off the loop: the proxy serves discovery from this test's loop.
    env = {"OLLAMA_BASE_URL": gzipping.url}
    gateway = await asyncio.to_thread(start_gateway, database_url, double, env)
    try:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            response = await client.post(
                "/v1/responses",
                json={"model": MODEL, "input": "hi", "stream": True},
                headers={**caller.auth, "accept-encoding": "gzip"},
            )
    finally:
        await asyncio.to_thread(gateway.stop)

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert gzipping.asked == ["identity"]


async def test_an_upstream_refusal_is_relayed_sanitised_in_openais_shape(
    caller: Caller, double: OllamaDouble
) -> None:
    double.fail_with = (400, "invalid input at /srv/ollama/responses.go on 10.9.8.7:11434")

    response = await caller.client.post(
        "/v1/responses", json={"model": MODEL, "input": "hi"}, headers=caller.auth
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"].startswith("invalid input at")
    assert error["type"] == "invalid_request_error"
    assert "/srv/ollama" not in response.text
    assert "10.9.8.7" not in response.text
