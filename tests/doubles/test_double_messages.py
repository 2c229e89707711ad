"""The double's `/v1/messages` speaks Ollama's Anthropic layer, checked with the official
`anthropic` SDK and on the wire: event names and order, the estimated `input_tokens` of
`message_start` and the real counts of `message_delta`, thinking, tool calls, errors."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from tests.doubles.conftest import CHAT_MODEL, EMBED_MODEL, events
from tests.doubles.ollama import OllamaDouble, count_prompt_tokens
from tests.doubles.ollama.anthropic_surface import estimate_input_tokens
from tests.support.client_requests import claude_code_request

THINKER = "qwen3:0.6b"
ASK: list[anthropic.types.MessageParam] = [
    {"role": "user", "content": "why is the sky blue, tell me"}
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


def body(**fields: Any) -> dict[str, Any]:
    return {"model": CHAT_MODEL, "max_tokens": 100, "messages": ASK, **fields}


def test_create_answers_text_with_ollamas_counts(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=CHAT_MODEL, max_tokens=100, system="be brief", messages=ASK
    )

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "tok0 tok1 tok2 tok3 tok4 "
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 5)


def test_max_tokens_caps_the_answer(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=CHAT_MODEL, max_tokens=3, messages=ASK)

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_stream_events_in_ollamas_order(http: httpx.Client) -> None:
    response = http.post("/v1/messages", json=body(stream=True))

    assert response.headers["content-type"] == "text/event-stream"
    pairs = events(response)
    names = [name for name, _ in pairs]
    assert names == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in pairs)
    start = pairs[0][1]["message"]
    # message_start carries Ollama's estimate (characters / 4); message_delta the counts.
    assert start["usage"] == {"input_tokens": estimate_input_tokens(body()), "output_tokens": 0}
    assert estimate_input_tokens(body()) == 8 != count_prompt_tokens({"messages": ASK}) == 7
    assert pairs[-2][1]["usage"] == {"input_tokens": 7, "output_tokens": 5}
    assert pairs[-2][1]["delta"] == {"stop_reason": "end_turn"}
    assert [d["delta"]["text"] for n, d in pairs if n == "content_block_delta"] == [
        f"tok{i} " for i in range(5)
    ]


def test_sdk_stream_accumulates_the_message(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model=CHAT_MODEL, max_tokens=100, messages=ASK) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert final.usage.output_tokens == 5


async def test_async_sdk_streams_too(double: OllamaDouble) -> None:
    client = anthropic.AsyncAnthropic(base_url=double.base_url, api_key="unused", max_retries=0)
    async with client.messages.stream(model=CHAT_MODEL, max_tokens=2, messages=ASK) as stream:
        final = await stream.get_final_message()
    await client.close()

    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 2


def test_a_thinking_model_thinks_first(double: OllamaDouble, claude: anthropic.Anthropic) -> None:
    double.models.append(THINKER)

    with claude.messages.stream(model=THINKER, max_tokens=100, messages=ASK) as stream:
        final = stream.get_final_message()
    plain = claude.messages.create(
        model=THINKER, max_tokens=100, messages=ASK, thinking={"type": "disabled"}
    )

    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking == "tok0 tok1 "
    assert final.content[1].type == "text"
    assert final.content[1].text == "tok2 tok3 tok4 "
    assert final.usage.output_tokens == 5
    assert [block.type for block in plain.content] == ["text"]


def test_thinking_is_relaxed_for_models_without_it(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=CHAT_MODEL,
        max_tokens=2000,
        messages=ASK,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )

    assert [block.type for block in message.content] == ["text"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_tool_is_called(claude: anthropic.Anthropic, stream: bool) -> None:
    arguments: dict[str, Any] = {
        "model": CHAT_MODEL,
        "max_tokens": 100,
        "messages": ASK,
        "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    }
    if stream:
        with claude.messages.stream(**arguments) as running:
            message = running.get_final_message()
    else:
        message = claude.messages.create(**arguments)

    assert message.stop_reason == "tool_use"
    [call] = message.content
    assert call.type == "tool_use"
    assert (call.name, call.input) == ("get_weather", {"city": "tok0"})
    assert message.usage.output_tokens == 5


def test_claude_codes_request_is_answered(http: httpx.Client) -> None:
    request = claude_code_request(CHAT_MODEL, "say hi", "unused")

    response = http.post(request.path, json=request.body, headers=request.headers)

    names = [name for name, _ in events(response)]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]


@pytest.mark.parametrize(
    ("fields", "status", "kind", "message"),
    [
        ({"model": "ghost:1b"}, 404, "not_found_error", 'model "ghost:1b" not found'),
        ({"model": EMBED_MODEL}, 400, "invalid_request_error", "does not support chat"),
        ({"max_tokens": 0}, 400, "invalid_request_error", "max_tokens is required"),
        ({"messages": []}, 400, "invalid_request_error", "messages is required"),
        ({"model": ""}, 400, "invalid_request_error", "model is required"),
        ({"max_tokens": "9"}, 400, "invalid_request_error", "cannot unmarshal string"),
    ],
)
def test_errors_have_anthropics_shape(
    http: httpx.Client, fields: dict[str, Any], status: int, kind: str, message: str
) -> None:
    response = http.post("/v1/messages", json=body(**fields))

    assert response.status_code == status
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == kind
    assert message in error["error"]["message"]


def test_sdk_maps_errors_to_its_classes(double: OllamaDouble, claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="ghost:1b", max_tokens=5, messages=ASK)
    double.fail_with = (429, "slow down")
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model=CHAT_MODEL, max_tokens=5, messages=ASK)


def test_a_broken_stream_just_ends(double: OllamaDouble, http: httpx.Client) -> None:
    double.mid_stream_error_after = 2

    response = http.post("/v1/messages", json=body(stream=True))

    names = [name for name, _ in events(response)]
    assert response.status_code == 200
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
    ]
