"""Request ids on every response (REFERENCE.md §4.1) and sanitised 500s (docs/REFERENCE.md §4.9)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from fastapi.routing import APIRoute

from neuronetz_gateway.app import GatewayApp, create_app
from neuronetz_gateway.config import Settings
from neuronetz_gateway.middleware.error_guard import internal_error_body
from neuronetz_gateway.policy.routes import SERVED

SECRET_TEXT = "boom at /srv/neuronetz/secret.py host db-internal.example 10.1.2.3"


@pytest.fixture
def app(settings: Settings) -> GatewayApp:
    app = create_app(settings)

    async def explode() -> None:
        raise RuntimeError(SECRET_TEXT)

    # The route policy lets only the gateway's own endpoints reach the framework: put a
    # raising route in front of /metrics so the whole middleware stack is exercised.
    app.framework.router.routes.insert(0, APIRoute("/metrics", explode))
    return app


@pytest.fixture
async def client(app: GatewayApp) -> AsyncIterator[httpx.AsyncClient]:
    # The framework answers with its last-resort handler and then re-raises for the
    # server to log, as uvicorn does; the client sees only the response.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


async def test_generated_id_on_success(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert response.headers["x-gateway-request-id"] == response.headers["x-request-id"]


async def test_valid_inbound_id_is_echoed_next_to_ours(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz", headers={"X-Request-ID": "abc.DEF_123-x"})
    second = await client.get("/healthz", headers={"X-Request-ID": "abc.DEF_123-x"})
    assert first.headers["x-request-id"] == second.headers["x-request-id"] == "abc.DEF_123-x"
    ours = {first.headers["x-gateway-request-id"], second.headers["x-gateway-request-id"]}
    assert len(ours) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ours)


@pytest.mark.parametrize(
    "inbound",
    ["", "a b", "a" * 129, "x\u00e9", "<script>", "a,b", "../../etc"],
)
async def test_invalid_inbound_id_is_replaced(client: httpx.AsyncClient, inbound: str) -> None:
    response = await client.get("/healthz", headers=[(b"x-request-id", inbound.encode())])
    assert response.headers["x-request-id"] != inbound
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert response.headers["x-gateway-request-id"] == response.headers["x-request-id"]


async def test_404_and_405_carry_an_id_and_the_error_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json() == {"error": f'no route for "/nowhere": this gateway serves {SERVED}'}
    assert missing.headers["x-request-id"]

    wrong = await client.post("/healthz")
    assert wrong.status_code == 405
    assert wrong.json() == {"error": "method not allowed"}
    assert wrong.headers["x-request-id"]
    assert wrong.headers["allow"] == "GET"


async def test_unhandled_exception_is_a_generic_500(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-500"
    ours = response.headers["x-gateway-request-id"]
    body = response.text
    # The id an operator can look up: the gateway's own, as in the audit log.
    assert response.json() == {"error": f"internal error (request id {ours})"}
    for fragment in ("boom", "secret.py", "db-internal", "10.1.2.3", "RuntimeError", "Traceback"):
        assert fragment not in body


def test_openai_surface_gets_the_openai_shape() -> None:
    scope = {"type": "http", "path": "/v1/chat/completions", "state": {"request_id": "r-1"}}
    error = orjson.loads(internal_error_body(scope))["error"]
    assert error == {
        "message": "internal error (request id r-1)",
        "type": "server_error",
        "param": None,
        "code": "internal_error",
    }


async def test_openai_404_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nowhere")
    assert missing.status_code == 404
    message = missing.json()["error"]["message"]
    assert message == f'no route for "/v1/nowhere": this gateway serves {SERVED}'
