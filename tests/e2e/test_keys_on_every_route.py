"""The key on every route (docs/REFERENCE.md §4.3, §12): `x-api-key` opens every route
`Authorization: Bearer` opens, and a request without any key is told so, in the error
shape of the route's surface. The list of routes is the gateway's own allowlist, so a
route added later is covered (or this test fails)."""

from __future__ import annotations

from typing import Any

import pytest

from neuronetz_gateway.policy import routes
from neuronetz_gateway.policy.routes import RouteKind
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import Caller

MODEL, EMBED = "llama3.1:8b", "nomic-embed-text:latest"
ASK = [{"role": "user", "content": "hi"}]
MISSING = "missing API key: send Authorization: Bearer <key> or x-api-key"

# One request for each route a key opens: (method, path, body).
REQUESTS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "/api/chat": ("POST", "/api/chat", {"model": MODEL, "messages": ASK, "stream": False}),
    "/api/generate": ("POST", "/api/generate", {"model": MODEL, "prompt": "hi", "stream": False}),
    "/api/embed": ("POST", "/api/embed", {"model": EMBED, "input": "hi"}),
    "/api/embeddings": ("POST", "/api/embeddings", {"model": EMBED, "prompt": "hi"}),
    "/api/show": ("POST", "/api/show", {"model": MODEL}),
    "/api/tags": ("GET", "/api/tags", None),
    "/api/ps": ("GET", "/api/ps", None),
    "/api/version": ("GET", "/api/version", None),
    "/v1/chat/completions": ("POST", "/v1/chat/completions", {"model": MODEL, "messages": ASK}),
    "/v1/completions": ("POST", "/v1/completions", {"model": MODEL, "prompt": "hi"}),
    "/v1/embeddings": ("POST", "/v1/embeddings", {"model": EMBED, "input": "hi"}),
    "/v1/models": ("GET", "/v1/models", None),
    "/v1/models/{model}": ("GET", f"/v1/models/{MODEL}", None),
    "/v1/responses": ("POST", "/v1/responses", {"model": MODEL, "input": "hi"}),
    "/v1/messages": (
        "POST",
        "/v1/messages?beta=true",
        {"model": MODEL, "max_tokens": 5, "messages": ASK},
    ),
    "/v1/messages/count_tokens": (
        "POST",
        "/v1/messages/count_tokens?beta=true",
        {"model": MODEL, "messages": ASK},
    ),
}
KEYED = sorted(REQUESTS)


def test_every_route_that_needs_a_key_is_here() -> None:
    served = [*routes.ALLOWED.values(), routes.V1_MODEL]
    keyed = {route.name for route in served if route.kind is not RouteKind.LIVENESS}

    assert keyed == set(REQUESTS)


@pytest.mark.parametrize("route", KEYED)
async def test_x_api_key_opens_the_route_like_bearer(
    caller: Caller, double: OllamaDouble, route: str
) -> None:
    method, path, body = REQUESTS[route]

    by_header = await caller.client.request(
        method, path, json=body, headers={"x-api-key": caller.key.secret}
    )
    by_bearer = await caller.client.request(method, path, json=body, headers=caller.auth)

    assert (by_header.status_code, by_bearer.status_code) == (200, 200), by_header.text
    for seen in double.requests:
        assert seen.header("x-api-key") is None
        assert seen.header("authorization") is None


@pytest.mark.parametrize("route", KEYED)
async def test_no_key_is_told_in_the_surfaces_shape(
    caller: Caller, double: OllamaDouble, route: str
) -> None:
    method, path, body = REQUESTS[route]

    response = await caller.client.request(method, path, json=body)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    if route.startswith("/v1/messages"):
        assert response.json() == {
            "type": "error",
            "error": {"type": "authentication_error", "message": MISSING},
        }
    elif route.startswith("/v1/"):
        error = response.json()["error"]
        assert (error["message"], error["code"]) == (MISSING, "missing_api_key")
    else:
        assert response.json() == {"error": MISSING}
    assert double.requests == []
