"""What the gateway records for `/v1/messages` and `/v1/responses` is what Ollama reported
(docs/REFERENCE.md §12): for 100 generated requests on each route — streamed or not,
system prompts and content blocks, caps, forced tool calls, a thinking model, answers
from empty to long — the audit row carries the double's final counts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.doubles.ollama import DEFAULT_MODELS, OllamaDouble, anthropic_surface, responses_surface
from tests.e2e.conftest import Caller, audit_rows

MODEL, THINKER = "llama3.1:8b", "qwen3:0.6b"
EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

words = st.lists(
    st.sampled_from(["sky", "blue", "why", "über", "naïve", "数据", "ok,", "a-b", "42", "\t"]),
    min_size=0,
    max_size=12,
).map(" ".join)
text_blocks = st.lists(words.map(lambda w: {"type": "text", "text": w}), min_size=1, max_size=3)
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


@pytest.fixture(scope="module")
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble(models=(*DEFAULT_MODELS, THINKER)) as running:
        yield running


@st.composite
def messages_requests(draw: st.DrawFn) -> dict[str, Any]:
    turns = draw(st.integers(1, 3))
    messages = [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": draw(st.one_of(words, text_blocks)),
        }
        for i in range(2 * turns - 1)
    ]
    body: dict[str, Any] = {
        "model": draw(st.sampled_from([MODEL, THINKER])),
        "max_tokens": draw(st.integers(1, 40)),
        "messages": messages,
        "stream": draw(st.booleans()),
    }
    if draw(st.booleans()):
        body["system"] = draw(st.one_of(words, text_blocks))
    if draw(st.booleans()):
        body["tools"] = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
        if draw(st.booleans()):
            body["tool_choice"] = {"type": "tool", "name": "get_weather"}
    if draw(st.booleans()):
        body["thinking"] = draw(st.sampled_from([{"type": "disabled"}, {"type": "adaptive"}]))
    return body


@st.composite
def responses_requests(draw: st.DrawFn) -> dict[str, Any]:
    item = st.fixed_dictionaries(
        {
            "type": st.just("message"),
            "role": st.sampled_from(["user", "developer", "system", "assistant"]),
            "content": st.one_of(
                words,
                st.lists(words.map(lambda w: {"type": "input_text", "text": w}), min_size=1),
            ),
        }
    )
    body: dict[str, Any] = {
        "model": draw(st.sampled_from([MODEL, THINKER])),
        "input": draw(st.one_of(words.filter(bool), st.lists(item, min_size=1, max_size=4))),
        "stream": draw(st.booleans()),
    }
    if draw(st.booleans()):
        body["max_output_tokens"] = draw(st.integers(1, 40))
    if draw(st.booleans()):
        body["instructions"] = draw(words)
    if draw(st.booleans()):
        tool = {"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}
        body["tools"] = [tool, {"type": "web_search"}]
        if draw(st.booleans()):
            body["tool_choice"] = "required"
    return body


def completion(natural: int, cap: Any) -> int:
    return min(natural, cap) if isinstance(cap, int) else natural


async def recorded_equals_reported(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine, path: str, body: dict[str, Any]
) -> None:
    double.clear()
    request_id = f"usage-{uuid.uuid4().hex[:16]}"
    headers = {**caller.auth, "X-Request-ID": request_id}
    async with caller.client.stream("POST", path, json=body, headers=headers) as response:
        await response.aread()
    assert response.status_code == 200, response.text
    [seen] = double.requests
    surface = anthropic_surface if path == "/v1/messages" else responses_surface
    cap = body.get("max_tokens" if path == "/v1/messages" else "max_output_tokens")
    reported = (
        surface.to_turn(seen.json, body["model"]).prompt_tokens(),
        completion(double.completion_tokens, cap),
    )
    [row] = await audit_rows(engine, request_id)
    assert (row.route, row.outcome) == (path, "ok")
    assert (row.prompt_tokens, row.completion_tokens) == reported


@EXAMPLES
@given(body=messages_requests(), answer_tokens=st.integers(0, 30))
async def test_messages_usage_is_ollamas(
    caller: Caller,
    double: OllamaDouble,
    engine: AsyncEngine,
    body: dict[str, Any],
    answer_tokens: int,
) -> None:
    double.completion_tokens = answer_tokens
    await recorded_equals_reported(caller, double, engine, "/v1/messages", body)


@EXAMPLES
@given(body=responses_requests(), answer_tokens=st.integers(0, 30))
async def test_responses_usage_is_ollamas(
    caller: Caller,
    double: OllamaDouble,
    engine: AsyncEngine,
    body: dict[str, Any],
    answer_tokens: int,
) -> None:
    double.completion_tokens = answer_tokens
    await recorded_equals_reported(caller, double, engine, "/v1/responses", body)
