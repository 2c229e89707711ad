"""Streams of `/v1/messages` and `/v1/responses` (docs/REFERENCE.md §4.7, §12): relayed
event by event as Ollama writes them, never held back for the rest of the answer; a
client that leaves cancels the generation and is charged what it was sent."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.limits import estimate_prompt_tokens
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import Caller, audit_rows

MODEL = "llama3.1:8b"
ASK = "go on"
# (path, streamed body, the event that carries each generated token)
STREAMS = [
    pytest.param(
        "/v1/messages",
        {
            "model": MODEL,
            "max_tokens": 2000,
            "stream": True,
            "messages": [{"role": "user", "content": ASK}],
        },
        "content_block_delta",
        id="messages",
    ),
    pytest.param(
        "/v1/responses",
        {"model": MODEL, "input": ASK, "stream": True},
        "response.output_text.delta",
        id="responses",
    ),
]


@pytest.mark.parametrize(("path", "body", "delta"), STREAMS)
async def test_each_event_is_relayed_as_ollama_writes_it(
    caller: Caller,
    double: OllamaDouble,
    engine: AsyncEngine,
    path: str,
    body: dict[str, Any],
    delta: str,
) -> None:
    """A token event reaches the client while Ollama is still generating: each of the
    first three arrives before the double has written two more."""
    double.completion_tokens, double.chunk_delay = 1000, 0.5
    request_id = f"events{path.replace('/', '-')}"
    headers = {**caller.auth, "X-Request-ID": request_id}
    written_when_seen: list[int] = []
    event: str | None = None
    async with caller.client.stream("POST", path, json=body, headers=headers) as response:
        assert response.headers["content-type"] == "text/event-stream"
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = orjson.loads(line.removeprefix("data: "))  # whole, as written
                assert data["type"] == event
                if event == delta:
                    [seen] = [r for r in double.requests if r.path == path]
                    written_when_seen.append(seen.chunks_sent)
                    if len(written_when_seen) == 3:
                        break

    cancelled = await asyncio.to_thread(double.wait_for_cancellation, 3.0)
    assert all(written <= index + 2 for index, written in enumerate(written_when_seen, start=1)), (
        written_when_seen
    )
    assert cancelled.chunks_sent < 1000
    [row] = await audit_rows(engine, request_id)
    assert row.outcome == "cancelled"
    # What was seen: the prompt estimate and one token per relayed token event.
    assert row.prompt_tokens == estimate_prompt_tokens(len(ASK))
    assert 3 <= row.completion_tokens <= cancelled.chunks_sent
