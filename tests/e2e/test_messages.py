"""`/v1/messages` through the gateway (docs/REFERENCE.md §12), driven by the official
`anthropic` SDK, sync and async: text, streams with a tool call and a thinking block,
`count_tokens`; the audit rows carry Ollama's counts. Refusals and failures:
`test_messages_refusals.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.doubles.ollama import DEFAULT_MODELS, OllamaDouble, count_prompt_tokens
from tests.doubles.ollama.anthropic_surface import estimate_input_tokens
from tests.e2e.conftest import Caller, audit_rows, limited_key
from tests.support.client_requests import claude_code_request
from tests.support.processes import GatewayProcess

MODEL = "llama3.1:8b"
THINKER = "qwen3:0.6b"
# Nine words; Ollama's message_start estimate for it (characters / 4) is 11.
ASK: list[anthropic.types.MessageParam] = [
    {"role": "user", "content": "why is the sky blue on clear days, really"}
]
WEATHER: anthropic.types.ToolParam = {
    "name": "get_weather",
    "description": "the weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble(models=(*DEFAULT_MODELS, THINKER)) as running:
        yield running


@pytest.fixture
def claude(gateway: GatewayProcess, caller: Caller) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(
        base_url=gateway.base_url, api_key=caller.key.secret, max_retries=0
    )
    yield client
    client.close()


@pytest.fixture
async def claude_async(
    gateway: GatewayProcess, caller: Caller
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        base_url=gateway.base_url, api_key=caller.key.secret, max_retries=0
    )
    yield client
    await client.close()


def rid(name: str) -> dict[str, str]:
    return {"X-Request-ID": name}


async def audited(engine: AsyncEngine, request_id: str) -> tuple[str, str, int, int]:
    [row] = await audit_rows(engine, request_id)
    return row.route, row.outcome, row.prompt_tokens, row.completion_tokens


async def test_create_is_answered_and_audited(
    claude_async: anthropic.AsyncAnthropic, engine: AsyncEngine, double: OllamaDouble
) -> None:
    message = await claude_async.messages.create(
        model=MODEL, max_tokens=100, messages=ASK, extra_headers=rid("msg-create")
    )

    assert message.content[0].type == "text"
    assert message.content[0].text == "tok0 tok1 tok2 tok3 tok4 "
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 5)
    assert await audited(engine, "msg-create") == ("/v1/messages", "ok", 9, 5)
    [seen] = double.requests
    assert seen.path == "/v1/messages"
    assert seen.header("x-api-key") is None  # the key never reaches Ollama
    assert seen.header("authorization") is None


async def test_the_sync_client_creates_and_counts(
    claude: anthropic.Anthropic, engine: AsyncEngine
) -> None:
    message = claude.messages.create(
        model=MODEL, max_tokens=100, messages=ASK, extra_headers=rid("msg-sync")
    )
    counted = claude.messages.count_tokens(model=MODEL, messages=ASK)

    assert message.content[0].type == "text"
    assert message.content[0].text == "tok0 tok1 tok2 tok3 tok4 "
    assert counted.input_tokens == -(-len(ASK[0]["content"]) // 3)  # type: ignore[arg-type]  # a str here
    assert await audited(engine, "msg-sync") == ("/v1/messages", "ok", 9, 5)


async def test_sync_stream_is_audited_with_message_delta_not_the_estimate(
    claude: anthropic.Anthropic, engine: AsyncEngine
) -> None:
    with claude.messages.stream(
        model=MODEL, max_tokens=100, messages=ASK, extra_headers=rid("msg-stream")
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert final.usage.output_tokens == 5
    assert final.usage.input_tokens == 9  # message_delta's count
    assert (
        estimate_input_tokens({"messages": ASK})
        == 11
        != count_prompt_tokens({"messages": ASK})
        == 9
    )
    assert await audited(engine, "msg-stream") == ("/v1/messages", "ok", 9, 5)


async def test_stream_is_audited_with_the_final_counts(
    claude_async: anthropic.AsyncAnthropic, engine: AsyncEngine
) -> None:
    async with claude_async.messages.stream(
        model=MODEL, max_tokens=3, messages=ASK, extra_headers=rid("msg-astream")
    ) as stream:
        final = await stream.get_final_message()

    assert final.stop_reason == "max_tokens"
    assert await audited(engine, "msg-astream") == ("/v1/messages", "ok", 9, 3)


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_tool_call(
    claude_async: anthropic.AsyncAnthropic, engine: AsyncEngine, streamed: bool
) -> None:
    arguments: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": ASK,
        "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "extra_headers": rid(f"msg-tool-{streamed}"),
    }
    if streamed:
        async with claude_async.messages.stream(**arguments) as stream:
            message = await stream.get_final_message()
    else:
        message = await claude_async.messages.create(**arguments)

    [call] = message.content
    assert call.type == "tool_use"
    assert (call.name, call.input) == ("get_weather", {"city": "tok0"})
    assert message.stop_reason == "tool_use"
    assert (await audited(engine, f"msg-tool-{streamed}"))[2:] == (9, 5)


def test_a_thinking_block(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=THINKER,
        max_tokens=100,
        messages=ASK,
        thinking={"type": "enabled", "budget_tokens": 50},
    ) as stream:
        final = stream.get_final_message()

    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking == "tok0 tok1 "


async def test_count_tokens_is_the_gateways_estimate(
    claude_async: anthropic.AsyncAnthropic, engine: AsyncEngine, double: OllamaDouble
) -> None:
    counted = await claude_async.messages.count_tokens(
        model=MODEL, system="be brief", messages=ASK, extra_headers=rid("msg-count")
    )

    text_bytes = len("be brief") + len(ASK[0]["content"])  # type: ignore[arg-type]  # a str here
    assert counted.input_tokens == -(-text_bytes // 3)
    assert double.requests == []  # Ollama has no count_tokens
    assert await audited(engine, "msg-count") == ("/v1/messages/count_tokens", "ok", 0, 0)


def test_count_tokens_of_an_unknown_model_is_not_found(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.count_tokens(model="ghost:1b", messages=ASK)

    assert caught.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": 'model "ghost:1b" not found'},
    }


async def test_count_tokens_does_not_count_against_limits(
    gateway: GatewayProcess, session: AsyncSession, double: OllamaDouble
) -> None:
    key = await limited_key(session, key={"rpm": 1, "daily_tokens": 1})
    client = anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key=key.secret, max_retries=0)

    counts = [await client.messages.count_tokens(model=MODEL, messages=ASK) for _ in range(3)]
    await client.close()

    assert [c.input_tokens for c in counts] == [counts[0].input_tokens] * 3


async def test_claude_codes_request_with_its_query_string(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine
) -> None:
    request = claude_code_request(MODEL, "say hi", caller.key.secret)
    headers = {**request.headers, "X-Request-ID": "claude-code"}

    async with caller.client.stream(
        "POST", request.path, json=request.body, headers=headers
    ) as response:
        body = (await response.aread()).decode()

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert "event: message_stop" in body
    [seen] = double.requests
    assert seen.raw_path == "/v1/messages"  # the query string is not forwarded
    route, outcome, prompt, completion = await audited(engine, "claude-code")
    assert (route, outcome, completion) == ("/v1/messages", "ok", 5)
    assert prompt == count_prompt_tokens(
        {"messages": [{"content": m} for m in _texts(request.body)]}
    )


def _texts(body: dict[str, Any]) -> list[str]:
    """The texts Ollama's chat turn holds for a Messages body (system, then messages)."""
    system = "".join(block["text"] for block in body["system"])
    texts = [system]
    for message in body["messages"]:
        content = message["content"]
        texts.append(content if isinstance(content, str) else "".join(b["text"] for b in content))
    return texts
