"""Route policy against a running gateway (docs/REFERENCE.md §4.2): raw request targets, every
blocked spelling 403 before authentication, and the Ollama double never sees them."""

from __future__ import annotations

import pytest

from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import Caller
from tests.policy.test_routes import BLOCKED_SPELLINGS, NOT_FOUND
from tests.support.processes import GatewayProcess
from tests.support.rawhttp import raw_request

METHODS = ["GET", "POST", "DELETE", "HEAD", "PUT"]


# Request targets the HTTP parser itself refuses (not origin-form, raw control bytes):
# 400 before the application sees them, which is as good as 403: nothing is forwarded.
UNPARSEABLE = [b"%2Fapi%2Fpull", b"api/pull", b"/api/pull\x00", b"/api/pu ll", b"/api/pull\r"]


@pytest.mark.parametrize("path", [p for p in BLOCKED_SPELLINGS if p.startswith("/")])
def test_blocked_spellings_are_403_and_never_forwarded(
    gateway: GatewayProcess, double: OllamaDouble, path: str
) -> None:
    for method in METHODS:
        response = raw_request(gateway.port, method, path, body=b'{"model":"llama3.1:8b"}')
        assert response.status == 403, (method, path, response.raw[:200])
        assert response.headers.get("x-request-id")
        assert "location" not in response.headers
        if method != "HEAD":
            assert response.body == b'{"error":"this endpoint is not available"}'
    assert double.requests == []


async def test_blocked_even_with_a_valid_key(caller: Caller, double: OllamaDouble) -> None:
    for path in ("/api/pull", "/api/delete", "/api/blobs/sha256:00"):
        response = await caller.client.post(path, headers=caller.auth, json={"model": "x"})
        assert response.status_code == 403
    assert double.requests == []


@pytest.mark.parametrize("target", UNPARSEABLE)
def test_unparseable_targets_never_reach_the_application(
    gateway: GatewayProcess, double: OllamaDouble, target: bytes
) -> None:
    response = raw_request(gateway.port, "POST", target, body=b"{}")
    assert response.status in (400, 403, 404)
    assert double.requests == []


@pytest.mark.parametrize("path", NOT_FOUND)
def test_unknown_paths_are_404_without_redirects(
    gateway: GatewayProcess, double: OllamaDouble, path: str
) -> None:
    response = raw_request(gateway.port, "GET", path)
    assert response.status == 404, (path, response.raw[:200])
    assert "location" not in response.headers
    assert response.headers.get("x-request-id")
    assert double.requests == []


def test_v1_paths_refuse_in_the_openai_shape(gateway: GatewayProcess) -> None:
    response = raw_request(gateway.port, "GET", "/v1/nothing")
    assert response.status == 404
    assert b'"type":"invalid_request_error"' in response.body


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", "/api/chat", "POST"), ("POST", "/api/tags", "GET"), ("PUT", "/v1/models", "GET")],
)
def test_wrong_method_is_405(gateway: GatewayProcess, method: str, path: str, allow: str) -> None:
    response = raw_request(gateway.port, method, path)
    assert response.status == 405
    assert response.headers["allow"] == allow


def test_absolute_form_target_cannot_reach_blocked_paths(
    gateway: GatewayProcess, double: OllamaDouble
) -> None:
    response = raw_request(gateway.port, "POST", "http://127.0.0.1/api/pull")
    assert response.status in (400, 403)
    assert double.requests == []


def test_percent_encoded_query_with_key_is_ignored(gateway: GatewayProcess) -> None:
    response = raw_request(gateway.port, "GET", "/api/tags?key=nz_abcdefgh")
    assert response.status == 401
