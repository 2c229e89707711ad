"""The double's `/v1/responses` speaks Ollama's Responses layer, checked with the official
`openai` SDK and on the wire: events through `response.completed` with its `usage`,
sequence numbers, reasoning, function calls, errors."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import FunctionToolParam, Response

from tests.doubles.conftest import CHAT_MODEL, EMBED_MODEL, events
from tests.doubles.ollama import OllamaDouble
from tests.support.client_requests import codex_request

THINKER = "qwen3:0.6b"
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


def test_create_answers_text_with_usage(oai: openai.OpenAI) -> None:
    response = oai.responses.create(
        model=CHAT_MODEL, instructions="be brief", input="why is the sky blue"
    )

    assert response.status == "completed"
    assert response.output_text == "tok0 tok1 tok2 tok3 tok4 "
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 5)
    assert response.usage.total_tokens == 12
    assert response.instructions == "be brief"


def test_max_output_tokens_caps_the_answer(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model=CHAT_MODEL, input="hi", max_output_tokens=2)

    assert response.output_text == "tok0 tok1 "
    assert response.usage is not None
    assert response.usage.output_tokens == 2
    assert response.max_output_tokens == 2


def test_stream_ends_with_completed_and_usage(http: httpx.Client) -> None:
    body = {"model": CHAT_MODEL, "input": "one two three", "stream": True}

    response = http.post("/v1/responses", json=body)

    assert response.headers["content-type"] == "text/event-stream"
    pairs = events(response)
    assert [name for name, _ in pairs] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in pairs] == list(range(len(pairs)))
    assert all(data["type"] == name for name, data in pairs)
    assert pairs[0][1]["response"]["usage"] is None
    completed = pairs[-1][1]["response"]
    assert completed["status"] == "completed"
    assert completed["usage"]["input_tokens"] == 3
    assert completed["usage"]["output_tokens"] == 5
    assert completed["output"][0]["content"][0]["text"] == "tok0 tok1 tok2 tok3 tok4 "


def test_sdk_streams(oai: openai.OpenAI) -> None:
    stream = oai.responses.create(model=CHAT_MODEL, input="hi", stream=True)

    seen = list(stream)

    deltas = [e.delta for e in seen if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "tok0 tok1 tok2 tok3 tok4 "
    assert seen[-1].type == "response.completed"
    assert seen[-1].response.usage is not None
    assert seen[-1].response.usage.output_tokens == 5


async def test_async_sdk_streams_too(double: OllamaDouble) -> None:
    client = openai.AsyncOpenAI(base_url=f"{double.base_url}/v1", api_key="x", max_retries=0)
    stream = await client.responses.create(model=CHAT_MODEL, input="hi", stream=True)
    seen = [event.type async for event in stream]
    await client.close()

    assert seen[-1] == "response.completed"


def test_a_thinking_model_reasons_first(double: OllamaDouble, oai: openai.OpenAI) -> None:
    double.models.append(THINKER)

    response = oai.responses.create(model=THINKER, input="hi", reasoning={"effort": "low"})
    plain = oai.responses.create(model=THINKER, input="hi", reasoning={"effort": "none"})

    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output_text == "tok2 tok3 tok4 "
    assert [item.type for item in plain.output] == ["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_required_function_is_called(oai: openai.OpenAI, stream: bool) -> None:
    response: Response
    if stream:
        with oai.responses.stream(
            model=CHAT_MODEL, input="weather", tools=[WEATHER], tool_choice="required"
        ) as running:
            response = running.get_final_response()
    else:
        response = oai.responses.create(
            model=CHAT_MODEL, input="weather", tools=[WEATHER], tool_choice="required"
        )

    [call] = response.output
    assert call.type == "function_call"
    assert (call.name, call.arguments) == ("get_weather", '{"city":"tok0"}')
    assert response.usage is not None
    assert response.usage.output_tokens == 5


def test_codexs_request_is_answered(http: httpx.Client) -> None:
    request = codex_request(CHAT_MODEL, "say hi", "unused")

    response = http.post(request.path, json=request.body, headers=request.headers)

    names = [name for name, _ in events(response)]
    assert names[0] == "response.created"
    assert names[-1] == "response.completed"


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"model": "ghost:1b"}, 404, 'model "ghost:1b" not found'),
        ({"model": EMBED_MODEL}, 400, "does not support chat"),
        ({"reasoning": {"effort": "high"}}, 400, "does not support thinking"),
        ({"reasoning": {"effort": "lots"}}, 400, "invalid reasoning value"),
        ({"input": [{"content": "x"}]}, 400, "missing required 'type' field"),
        ({"input": [{"type": "telepathy"}]}, 400, "unknown input item type"),
    ],
)
def test_errors_have_openais_shape(
    http: httpx.Client, fields: dict[str, Any], status: int, message: str
) -> None:
    response = http.post("/v1/responses", json={"model": CHAT_MODEL, "input": "hi", **fields})

    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert message in error["message"]


def test_sdk_maps_errors_to_its_classes(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="ghost:1b", input="hi")
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(
            model=CHAT_MODEL, input="hi", extra_body={"input": [{"type": "telepathy"}]}
        )


def test_a_broken_stream_ends_without_completed(double: OllamaDouble, http: httpx.Client) -> None:
    double.mid_stream_error_after = 1
    body = {"model": CHAT_MODEL, "input": "hi", "stream": True}

    names = [name for name, _ in events(http.post("/v1/responses", json=body))]

    assert names[-1] == "response.output_text.delta"
    assert "response.completed" not in names
