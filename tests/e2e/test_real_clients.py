"""The official `openai` and `ollama` Python clients against the running gateway,
with the token counts the audit log recorded for each call."""

from __future__ import annotations

import asyncio

import ollama
import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.doubles.ollama import OllamaDouble, count_prompt_tokens
from tests.e2e.conftest import Caller, audit_rows
from tests.support.processes import GatewayProcess

MODEL = "llama3.1:8b"
EMBED = "nomic-embed-text:latest"


@pytest.fixture
def openai_client(gateway: GatewayProcess, caller: Caller) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=caller.key.secret, max_retries=0
    )


@pytest.fixture
def ollama_client(gateway: GatewayProcess, caller: Caller) -> ollama.AsyncClient:
    return ollama.AsyncClient(
        host=gateway.base_url, headers={"Authorization": f"Bearer {caller.key.secret}"}
    )


async def _tokens(engine: AsyncEngine, request_id: str) -> tuple[int, int]:
    [row] = await audit_rows(engine, request_id)
    assert row.outcome == "ok"
    return row.prompt_tokens, row.completion_tokens


async def test_openai_chat(openai_client: openai.AsyncOpenAI, engine: AsyncEngine) -> None:
    result = await openai_client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "tell me a story"}],
        extra_headers={"X-Request-ID": "oa-chat"},
    )
    completion = result.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert await _tokens(engine, "oa-chat") == (4, 5)
    assert completion.usage.prompt_tokens == 4


async def test_openai_chat_stream(openai_client: openai.AsyncOpenAI, engine: AsyncEngine) -> None:
    stream = await openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "one two"}],
        stream=True,
        extra_headers={"X-Request-ID": "oa-stream"},
    )
    pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    assert len([p for p in pieces if p]) == 5
    assert await _tokens(engine, "oa-stream") == (2, 5)


async def test_openai_stream_with_usage(openai_client: openai.AsyncOpenAI) -> None:
    stream = await openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "one two"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usages = [chunk.usage async for chunk in stream if chunk.usage is not None]
    assert usages[-1].completion_tokens == 5


async def test_openai_completions(openai_client: openai.AsyncOpenAI, engine: AsyncEngine) -> None:
    completion = await openai_client.completions.create(
        model=MODEL, prompt="say hi", max_tokens=3, extra_headers={"X-Request-ID": "oa-compl"}
    )
    assert completion.choices[0].finish_reason == "length"
    assert await _tokens(engine, "oa-compl") == (2, 3)


async def test_openai_embeddings(openai_client: openai.AsyncOpenAI, engine: AsyncEngine) -> None:
    result = await openai_client.embeddings.create(
        model=EMBED, input=["a b c", "d"], extra_headers={"X-Request-ID": "oa-embed"}
    )
    assert len(result.data) == 2
    assert await _tokens(engine, "oa-embed") == (4, 0)


async def test_openai_models(openai_client: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in openai_client.models.list()]
    assert sorted(models) == sorted([MODEL, "qwen2.5:0.5b", EMBED])
    one = await openai_client.models.retrieve(MODEL)
    assert one.id == MODEL


async def test_openai_errors_are_typed(openai_client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await openai_client.chat.completions.create(
            model="nope:1b", messages=[{"role": "user", "content": "x"}]
        )
    bad = openai.AsyncOpenAI(
        base_url=str(openai_client.base_url), api_key="nz_wrong", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        await bad.models.list()


async def test_ollama_chat(ollama_client: ollama.AsyncClient, engine: AsyncEngine) -> None:
    messages = [{"role": "user", "content": "why is the sky blue"}]
    response = await ollama_client.chat(model=MODEL, messages=messages)
    assert response.message.content
    assert response.prompt_eval_count == count_prompt_tokens({"messages": messages})
    assert response.eval_count == 5


async def test_ollama_chat_stream(ollama_client: ollama.AsyncClient, double: OllamaDouble) -> None:
    double.completion_tokens = 9
    parts = [
        part
        async for part in await ollama_client.chat(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
        )
    ]
    assert parts[-1].done
    assert parts[-1].eval_count == 9
    assert len(parts) == 10


async def test_ollama_generate_and_embed(ollama_client: ollama.AsyncClient) -> None:
    generated = await ollama_client.generate(model=MODEL, prompt="a b")
    assert generated.done
    embedded = await ollama_client.embed(model=EMBED, input="a b c")
    assert len(embedded.embeddings) == 1
    assert embedded.prompt_eval_count == 3


async def test_ollama_list_and_show(ollama_client: ollama.AsyncClient) -> None:
    listed = await ollama_client.list()
    assert sorted(m.model or "" for m in listed.models) == sorted([MODEL, "qwen2.5:0.5b", EMBED])
    shown = await ollama_client.show(MODEL)
    assert shown.details is not None


async def test_ollama_pull_is_forbidden(ollama_client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await ollama_client.pull(MODEL)
    assert caught.value.status_code == 403


async def test_concurrent_streams(ollama_client: ollama.AsyncClient) -> None:
    async def one() -> int:
        parts = [
            p async for p in await ollama_client.generate(model=MODEL, prompt="x", stream=True)
        ]
        return parts[-1].eval_count or 0

    assert await asyncio.gather(*(one() for _ in range(20))) == [5] * 20
