"""The forwarding client's connection limit (docs/UPSTREAMS.md, "Failures" and "The
forwarding client"): with every `UPSTREAM_MAX_CONNECTIONS` connection of the process
busy for `UPSTREAM_CONNECT_TIMEOUT_SECONDS`, a request is answered 503 `server_busy`
with `Retry-After` in its API's error shape, never reaches Ollama, and the server is
not ejected: the limit is the gateway's own, so the next request is served.

The gateway may open one connection and waits 0.3 s for it; its fair queue has slots
enough that it is not what refuses.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import Caller, audit_rows
from tests.support.metrics import scrape
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway

MODEL = "llama3.1:8b"
ASK = [{"role": "user", "content": "hi"}]
CONNECT_TIMEOUT_SECONDS = 0.3
HOLDER_TOKENS = 200  # at HOLDER_DELAY each: longer than the test needs the holder
HOLDER_DELAY = 0.05
BUSY = "server busy, retry shortly"


@dataclass(frozen=True)
class Surface:
    """A chat API: its path, the error body of `server_busy` in its shape, and how
    a finished stream of it ends."""

    path: str
    busy: dict[str, object]

    def finished(self, stream: bytes) -> bool:
        if self.path == "/api/chat":
            last = stream.rstrip(b"\n").rsplit(b"\n", 1)[-1]
            return orjson.loads(last).get("done") is True
        return stream.rstrip().endswith(b"data: [DONE]")


NATIVE = Surface("/api/chat", {"error": BUSY})
OPENAI = Surface(
    "/v1/chat/completions",
    {"error": {"message": BUSY, "type": "server_error", "param": None, "code": "server_busy"}},
)


@pytest.fixture(scope="module")
def gateway(database_url: str, double: OllamaDouble) -> Iterator[GatewayProcess]:
    env = {
        "UPSTREAM_MAX_CONNECTIONS": "1",
        "UPSTREAM_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT_SECONDS),
        "OLLAMA_SLOTS": "100",
    }
    process = start_gateway(database_url, double, env)
    yield process
    process.stop()


def received(double: OllamaDouble, surface: Surface) -> int:
    """How many chat requests of `surface` the double received (a `/metrics` scrape
    adds readiness checks of its own)."""
    return sum(r.path == surface.path for r in double.requests)


async def upstream_up(caller: Caller, double: OllamaDouble) -> float:
    """The gateway's `neuronetz_upstream_up` of the double (1: in rotation)."""
    metrics = await scrape(caller.client)
    return metrics.value("neuronetz_upstream_up", upstream=f"127.0.0.1:{double.port}")


@pytest.mark.parametrize("surface", [NATIVE, OPENAI], ids=["native", "openai"])
async def test_a_request_that_finds_every_connection_busy_is_503_server_busy_not_ejected(
    caller: Caller,
    double: OllamaDouble,
    engine: AsyncEngine,
    gateway: GatewayProcess,
    surface: Surface,
) -> None:
    double.completion_tokens, double.chunk_delay = HOLDER_TOKENS, HOLDER_DELAY
    hold = {"model": MODEL, "messages": ASK, "stream": True}
    ask = {"model": MODEL, "messages": ASK, "stream": False}
    async with caller.client.stream("POST", surface.path, json=hold, headers=caller.auth) as held:
        assert held.status_code == 200
        chunks = held.aiter_bytes()  # kept: a dropped iterator closes the response
        first = await anext(chunks)  # the holder has the process's only connection

        started = time.monotonic()
        refused = await caller.client.post(surface.path, json=ask, headers=caller.auth)
        waited = time.monotonic() - started

        assert refused.status_code == 503
        assert refused.json() == surface.busy
        assert refused.headers["retry-after"] == "1"
        request_id = refused.headers["x-request-id"]
        assert request_id
        assert waited >= CONNECT_TIMEOUT_SECONDS * 0.8  # it waited for a connection
        assert received(double, surface) == 1  # the holder only
        assert await upstream_up(caller, double) == 1.0  # not ejected

        double.chunk_delay = 0.001  # the holder may finish now
        rest = b"".join([chunk async for chunk in chunks])
    assert surface.finished(first + rest)  # the refusal did not disturb the holder

    served = await caller.client.post(surface.path, json=ask, headers=caller.auth)

    assert served.status_code == 200, served.text
    assert received(double, surface) == 2
    assert "upstream_ejected" not in gateway.logs()
    [row] = await audit_rows(engine, request_id)
    assert (row.route, row.status_code, row.outcome) == (surface.path, 503, "unavailable")
