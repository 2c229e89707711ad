"""Route policy (REFERENCE.md §4.2) as a pure function: allowlist, blocked spellings, 404/405."""

from __future__ import annotations

import pytest

from neuronetz_gateway.policy.routes import Verdict, canonical_path, classify

ALLOWED = [
    ("POST", "/api/chat"),
    ("POST", "/api/generate"),
    ("POST", "/api/embed"),
    ("POST", "/api/embeddings"),
    ("POST", "/api/show"),
    ("GET", "/api/tags"),
    ("GET", "/api/ps"),
    ("GET", "/api/version"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/llama3.1:8b"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
]

BLOCKED_NAMES = ["pull", "push", "create", "copy", "delete"]

# Spellings of blocked endpoints a lenient server (or a future proxy hop) could route.
BLOCKED_SPELLINGS = [
    "/api/pull",
    "/API/PULL",
    "/Api/Pull",
    "//api/pull",
    "/api//pull",
    "/api/pull/",
    "/api/pull//",
    "/./api/pull",
    "/api/./pull",
    "/api/chat/../pull",
    "/v1/../api/pull",
    "/../api/pull",
    "/api/%70ull",
    "/api/%50ULL",
    "/%61pi/pull",
    "/api%2Fpull",
    "/api%2fpull",
    "%2Fapi%2Fpull",
    "/api/pull%2F",
    "/api/%2e/pull",
    "/api/%2E%2E/api/pull",
    "/api/x/%2e%2e/pull",
    "/api/pull;x",
    "/api;x/pull",
    "/api/pull;jsessionid=1",
    "/api/pull%00",
    "/api/pu%00ll",
    "/api/pull%00.json",
    "/api/pull%20",
    "/api/pull%09",
    "/api\\pull",
    "/api%5Cpull",
    "/api/%2570ull",
    "/api/%252Fpull",
    "/api/pull?x=1",
    "/api/blobs",
    "/api/blobs/",
    "/api/blobs/sha256:abc",
    "/API/BLOBS/sha256:abc",
    "/api/blobs/../blobs/x",
    "/api/%62lobs/sha256:1",
    "/api/push",
    "/api/create",
    "/api/copy",
    "/api/delete",
    "/api/DELETE",
]

NOT_FOUND = [
    "/api/me",
    "/api/signout",
    "/api/experimental/web_search",
    "/api/chat/",
    "/API/CHAT",
    "//api/chat",
    "/api/pullx",
    "/api/pulls",
    "/api/blobsx",
    "/v1/models/",
    "/v1/models/../../api/tags",
    "/v1/chat",
    "/v1",
    "/docs",
    "/openapi.json",
    "/metrics/",
    "/healthz/",
    "/admin",
]


@pytest.mark.parametrize(("method", "path"), ALLOWED)
def test_allowlisted_routes(method: str, path: str) -> None:
    decision = classify(method, path.encode())
    assert decision.verdict is Verdict.ROUTE
    assert decision.route is not None
    assert decision.route.upstream_path.startswith("/")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_root_is_the_liveness_probe(method: str) -> None:
    assert classify(method, b"/").verdict is Verdict.LIVENESS
    post = classify("POST", b"/")
    assert (post.verdict, post.allow) == (Verdict.METHOD_NOT_ALLOWED, "GET, HEAD")


def test_upstream_paths_are_fixed_strings() -> None:
    decision = classify("POST", b"/api/chat")
    assert decision.route is not None
    assert decision.route.upstream_path == "/api/chat"


@pytest.mark.parametrize("path", BLOCKED_SPELLINGS)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "HEAD", "PUT", "PATCH", "OPTIONS"])
def test_blocked_spellings_for_every_method(method: str, path: str) -> None:
    assert classify(method, path.encode("latin-1")).verdict is Verdict.BLOCKED


@pytest.mark.parametrize("path", NOT_FOUND)
def test_everything_else_is_not_found(path: str) -> None:
    assert classify("GET", path.encode()).verdict is Verdict.NOT_FOUND
    assert classify("POST", path.encode()).verdict is Verdict.NOT_FOUND


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/chat", "POST"),
        ("PUT", "/api/generate", "POST"),
        ("POST", "/api/tags", "GET"),
        ("DELETE", "/v1/models", "GET"),
        ("POST", "/", "GET, HEAD"),
        ("HEAD", "/api/tags", "GET"),
        ("get", "/api/tags", "GET"),
        ("POST", "/healthz", "GET"),
    ],
)
def test_wrong_method_is_405_with_allow(method: str, path: str, allow: str) -> None:
    decision = classify(method, path.encode())
    assert decision.verdict is Verdict.METHOD_NOT_ALLOWED
    assert decision.allow == allow


def test_internal_endpoints_go_to_the_framework() -> None:
    for path in (b"/healthz", b"/readyz", b"/metrics"):
        assert classify("GET", path).verdict is Verdict.INTERNAL


@pytest.mark.parametrize(
    ("raw", "model"),
    [
        ("/v1/models/llama3.1:8b", "llama3.1:8b"),
        ("/v1/models/llama3.1%3A8b", "llama3.1:8b"),
        ("/v1/models/hf.co/org/model:Q4_K_M", "hf.co/org/model:Q4_K_M"),
    ],
)
def test_v1_model_segment(raw: str, model: str) -> None:
    decision = classify("GET", raw.encode())
    assert decision.verdict is Verdict.ROUTE
    assert decision.model == model


@pytest.mark.parametrize(
    "raw",
    ["/v1/models/%00", "/v1/models/a%20b", "/v1/models/..", "/v1/models/-x", "/v1/models/%C3%A9"],
)
def test_v1_model_segment_rejects_odd_names(raw: str) -> None:
    assert classify("GET", raw.encode()).verdict is Verdict.NOT_FOUND


def test_canonical_path_resolution() -> None:
    assert canonical_path(b"/a/./b/../c//d/") == "/a/c/d"
    assert canonical_path(b"/%2561pi") == "/api"
    assert canonical_path(b"/../../..") == "/"


@pytest.mark.parametrize("name", BLOCKED_NAMES)
def test_every_blocked_name_blocked_in_any_case(name: str) -> None:
    for variant in (name, name.upper(), name.capitalize()):
        assert classify("POST", f"/api/{variant}".encode()).verdict is Verdict.BLOCKED
