"""The error bodies of each surface (docs/REFERENCE.md §4.9, §12): Anthropic's `type` by
status under `/v1/messages`, OpenAI's shape on the other `/v1` routes and on
`/v1/responses`, Ollama's on the native routes."""

from __future__ import annotations

import orjson
import pytest

from neuronetz_gateway.errors import Surface, error_body, surface_of_path


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (408, "invalid_request_error"),
        (413, "request_too_large"),
        (415, "invalid_request_error"),
        (429, "rate_limit_error"),
        (431, "invalid_request_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "api_error"),
    ],
)
def test_anthropic_type_by_status(status: int, kind: str) -> None:
    body = orjson.loads(error_body(Surface.ANTHROPIC, status, "told", code="x", param="p"))

    assert body == {"type": "error", "error": {"type": kind, "message": "told"}}


@pytest.mark.parametrize(
    ("path", "surface"),
    [
        ("/v1/messages", Surface.ANTHROPIC),
        ("/v1/messages/count_tokens", Surface.ANTHROPIC),
        ("/v1/messages/batches", Surface.ANTHROPIC),
        ("/v1/messagesx", Surface.OPENAI),
        ("/v1/responses", Surface.OPENAI),
        ("/v1/chat/completions", Surface.OPENAI),
        ("/api/chat", Surface.NATIVE),
        ("/", Surface.NATIVE),
    ],
)
def test_surface_by_path(path: str, surface: Surface) -> None:
    assert surface_of_path(path) is surface
