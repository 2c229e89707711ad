"""Nothing internal leaks to a client, and a client cannot forge the audit's request id.

- Upstream error text keeps no host name, with dots or without (docs/REFERENCE.md §4.7):
  in a 4xx on both surfaces and in an in-band stream error.
- A client's `X-Request-ID` is echoed, logged and stored as `client_request_id`; the
  audit row's `request_id` (and what Ollama sees) is always the gateway's own, so two
  requests with the same id stay two rows that can be told apart (§4.1).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import Caller, audit_rows
from tests.support.processes import GatewayProcess

MODEL = "llama3.1:8b"
HOSTILE_TEXT = (
    "model failed on ollama-internal.svc: dial tcp: lookup ollama-internal on "
    "10.96.0.10:53: no such host; runner gpubox:11434 gone"
)
LEAKS = ("ollama-internal", "gpubox", "10.96", ".svc")


def chat(stream: bool) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


@pytest.fixture
def hostile_error_text(double: OllamaDouble) -> Iterator[None]:
    default = double.error_message
    double.error_message = HOSTILE_TEXT
    yield
    double.error_message = default


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_an_upstream_4xx_names_no_host(
    caller: Caller, double: OllamaDouble, path: str
) -> None:
    double.fail_with = (400, HOSTILE_TEXT)
    response = await caller.client.post(path, json=chat(False), headers=caller.auth)
    assert response.status_code == 400
    assert "model failed on" in response.text  # the wording survives
    for leak in LEAKS:
        assert leak not in response.text


@pytest.mark.usefixtures("hostile_error_text")
async def test_an_in_band_stream_error_names_no_host(caller: Caller, double: OllamaDouble) -> None:
    double.mid_stream_error_after = 2
    response = await caller.client.post("/api/chat", json=chat(True), headers=caller.auth)
    last = json.loads(response.text.strip().splitlines()[-1])
    assert "model failed on" in last["error"]
    for leak in LEAKS:
        assert leak not in response.text


async def test_a_client_request_id_is_echoed_but_never_the_audit_key(
    caller: Caller,
    double: OllamaDouble,
    engine: AsyncEngine,
    gateway: GatewayProcess,
) -> None:
    chosen = "collide-me-1"
    headers = {**caller.auth, "X-Request-ID": chosen}
    first, second = [
        await caller.client.post("/api/chat", json=chat(False), headers=headers) for _ in range(2)
    ]
    ours = [first.headers["x-gateway-request-id"], second.headers["x-gateway-request-id"]]
    assert first.headers["x-request-id"] == second.headers["x-request-id"] == chosen
    assert len(set(ours)) == 2
    assert chosen not in ours

    # Ollama sees the gateway's ids.
    assert [r.header("x-request-id") for r in double.requests] == ours

    rows = await audit_rows(engine, chosen, expected=2)
    assert sorted(row.request_id for row in rows) == sorted(ours)
    assert {row.client_request_id for row in rows} == {chosen}

    for request_id in ours:
        line = await asyncio.to_thread(gateway.wait_for_log, request_id, 5.0)
        assert line is not None
        entry = json.loads(line)
        assert (entry["request_id"], entry["client_request_id"]) == (request_id, chosen)


async def test_without_a_client_id_both_headers_name_ours(caller: Caller) -> None:
    response = await caller.client.post("/api/chat", json=chat(False), headers=caller.auth)
    assert response.headers["x-request-id"] == response.headers["x-gateway-request-id"]
