"""`/v1/messages` and `/v1/responses` wait in the fair queue like every model route
(docs/REFERENCE.md §10, §12): with Ollama's one slot held, a request of either API
waits its turn (`audit_log.queue_ms`) and is served when the slot comes free, or is
told the server is busy in its API's error shape; `count_tokens` takes no slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import Caller, audit_rows
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway

MODEL = "llama3.1:8b"
ASK = [{"role": "user", "content": "hi"}]
MESSAGES = {"model": MODEL, "max_tokens": 20, "messages": ASK}
RESPONSES = {"model": MODEL, "input": "hi"}
MAX_WAIT_SECONDS = 2


@pytest.fixture(scope="module")
def gateway(database_url: str, double: OllamaDouble) -> Iterator[GatewayProcess]:
    env = {"OLLAMA_SLOTS": "1", "QUEUE_MAX_WAIT_SECONDS": str(MAX_WAIT_SECONDS)}
    process = start_gateway(database_url, double, env)
    yield process
    process.stop()


@pytest.fixture
async def holding(caller: Caller, double: OllamaDouble) -> AsyncIterator[None]:
    """A Messages stream that holds the only slot until the test ends."""
    double.completion_tokens, double.chunk_delay = 10_000, 0.01
    body = {**MESSAGES, "max_tokens": 10_000, "stream": True}
    async with caller.client.stream("POST", "/v1/messages", json=body, headers=caller.auth) as r:
        assert r.status_code == 200
        chunks = r.aiter_bytes()  # kept: a dropped iterator closes the response
        await anext(chunks)
        yield
    await asyncio.to_thread(double.wait_for_cancellation, 3.0)
    double.completion_tokens, double.chunk_delay = 5, 0.0


@pytest.mark.usefixtures("holding")
async def test_count_tokens_takes_no_slot(caller: Caller) -> None:
    started = time.monotonic()
    response = await caller.client.post(
        "/v1/messages/count_tokens", json=MESSAGES, headers=caller.auth
    )

    assert response.status_code == 200
    assert time.monotonic() - started < MAX_WAIT_SECONDS / 2


@pytest.mark.usefixtures("holding")
@pytest.mark.parametrize(
    ("path", "body"), [("/v1/messages", MESSAGES), ("/v1/responses", RESPONSES)]
)
async def test_a_request_that_finds_no_slot_in_time_is_told_in_its_apis_shape(
    caller: Caller, double: OllamaDouble, engine: AsyncEngine, path: str, body: dict[str, object]
) -> None:
    request_id = f"busy{path.replace('/', '-')}"
    headers = {**caller.auth, "X-Request-ID": request_id}

    response = await caller.client.post(path, json=body, headers=headers)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    if path == "/v1/messages":
        assert response.json() == {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "server busy, retry shortly"},
        }
    else:
        assert response.json()["error"]["code"] == "server_busy"
    assert [r.path for r in double.requests] == ["/v1/messages"]  # the holder only
    [row] = await audit_rows(engine, request_id)
    assert (row.route, row.status_code) == (path, 503)
    assert (row.queue_ms or 0) >= MAX_WAIT_SECONDS * 1000 * 0.9


@pytest.mark.parametrize(
    ("path", "body"), [("/v1/messages", MESSAGES), ("/v1/responses", RESPONSES)]
)
async def test_a_request_waits_its_turn_and_is_served(
    caller: Caller,
    double: OllamaDouble,
    engine: AsyncEngine,
    gateway: GatewayProcess,
    path: str,
    body: dict[str, object],
) -> None:
    request_id = f"turn{path.replace('/', '-')}"
    double.completion_tokens, double.chunk_delay = 10_000, 0.01
    hold = {**MESSAGES, "max_tokens": 10_000, "stream": True}
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=20) as other:
        async with caller.client.stream(
            "POST", "/v1/messages", json=hold, headers=caller.auth
        ) as held:
            chunks = held.aiter_bytes()  # kept: a dropped iterator closes the response
            await anext(chunks)
            waiting = asyncio.create_task(
                other.post(path, json=body, headers={**caller.auth, "X-Request-ID": request_id})
            )
            await asyncio.sleep(0.5)  # the time it waits: the slot is held all along
            assert not waiting.done()
            double.completion_tokens, double.chunk_delay = 5, 0.0  # for the waiting one
        # The holder left: its slot goes to the waiting request.
        response = await waiting
    await asyncio.to_thread(double.wait_for_cancellation, 3.0)  # the holder's

    assert response.status_code == 200
    [row] = await audit_rows(engine, request_id)
    assert (row.route, row.outcome) == (path, "ok")
    assert (row.queue_ms or 0) >= 400
