"""Fixtures and helpers shared by the Ollama double's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import ollama
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.doubles.ollama import OllamaDouble

CHAT_MODEL = "llama3.1:8b"
EMBED_MODEL = "nomic-embed-text:latest"
HELLO: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there"},
]
# Short enough to expire while the double holds a request; connecting stays generous.
READ_TIMEOUT = httpx.Timeout(5.0, read=0.1)
FINAL_INTEGERS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble() as running:
        yield running


@pytest.fixture
def http(double: OllamaDouble) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=double.base_url) as client:
        yield client


@pytest.fixture
def native(double: OllamaDouble) -> Iterator[ollama.Client]:
    with ollama.Client(host=double.base_url) as client:
        yield client


@pytest.fixture
def oai(double: OllamaDouble) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{double.base_url}/v1", api_key="unused", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def claude(double: OllamaDouble) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=double.base_url, api_key="unused", max_retries=0)
    yield client
    client.close()


def events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of an SSE body with `event:` lines, checking the framing."""
    frames = response.text.split("\n\n")
    assert frames[-1] == "", "the body must end with a blank line"
    pairs = []
    for frame in frames[:-1]:
        name, data = frame.split("\n")
        assert name.startswith("event: ")
        assert data.startswith("data: ")
        payload = orjson.loads(data.removeprefix("data: "))
        pairs.append((name.removeprefix("event: "), payload))
    return pairs


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in response.text.splitlines()]


def sse(response: httpx.Response) -> list[str]:
    """The `data:` payloads of an SSE body, checking every frame's framing."""
    frames = response.text.split("\n\n")
    assert frames[-1] == "", "the body must end with a blank line"
    assert all(f.startswith("data: ") for f in frames[:-1])
    return [f.removeprefix("data: ") for f in frames[:-1]]
