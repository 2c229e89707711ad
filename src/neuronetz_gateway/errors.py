"""Gateway errors and the error shapes of docs/REFERENCE.md §4.9 and §12.

A pipeline stage that refuses raises `GatewayError`; the edge renders it in the shape of
the surface the client spoke to. Messages here are written by us, never copied from an
exception, so nothing internal can leak through them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import orjson

from neuronetz_gateway.outcome import Outcome


class Surface(enum.Enum):
    """Which API the client spoke to: decides the error shape."""

    NATIVE = "native"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


def surface_of_path(path: str) -> Surface:
    """Anthropic shape under `/v1/messages`, OpenAI shape for other `/v1` paths, native
    shape for everything else."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return Surface.ANTHROPIC
    return Surface.OPENAI if path == "/v1" or path.startswith("/v1/") else Surface.NATIVE


# OpenAI's `type` for each status we answer with, where the error names no better one.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "requests",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}


# Anthropic's error `type` by status (docs/REFERENCE.md §12); other 4xx are
# invalid_request_error, other 5xx api_error.
_ANTHROPIC_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def anthropic_type(status: int) -> str:
    """The Anthropic error `type` of a status."""
    default = "api_error" if status >= 500 else "invalid_request_error"
    return _ANTHROPIC_TYPES.get(status, default)


@dataclass(slots=True)
class GatewayError(Exception):
    """A refusal with everything needed to answer and audit it."""

    status: int
    message: str
    outcome: Outcome
    code: str | None = None
    type: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


def error_body(
    surface: Surface,
    status: int,
    message: str,
    *,
    code: str | None = None,
    type_: str | None = None,
    param: str | None = None,
) -> bytes:
    """The JSON error body for `surface` (docs/REFERENCE.md §4.9, §12)."""
    if surface is Surface.NATIVE:
        return orjson.dumps({"error": message})
    if surface is Surface.ANTHROPIC:
        error = {"type": anthropic_type(status), "message": message}
        return orjson.dumps({"type": "error", "error": error})
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": type_ or _OPENAI_TYPES.get(status, "invalid_request_error"),
                "param": param,
                "code": code,
            }
        }
    )


def render(error: GatewayError, surface: Surface) -> bytes:
    """The body for `error` in the shape of `surface`."""
    return error_body(
        surface,
        error.status,
        error.message,
        code=error.code,
        type_=error.type,
        param=error.param,
    )


# Constructors for the refusals every surface shares, so wording stays identical.


def unauthorized() -> GatewayError:
    """401 with one body for unknown, wrong, revoked and expired keys (docs/REFERENCE.md §4.3)."""
    return GatewayError(
        401,
        "invalid API key",
        Outcome.AUTH_FAILED,
        code="invalid_api_key",
        headers={"www-authenticate": "Bearer"},
    )


def model_not_found(model: str) -> GatewayError:
    """404 identical for unknown and ungranted models (docs/REFERENCE.md §4.4)."""
    shown = model if len(model) <= 128 else model[:128] + "…"
    return GatewayError(
        404, f'model "{shown}" not found', Outcome.NOT_FOUND, code="model_not_found", param="model"
    )


def bad_request(message: str, *, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, Outcome.CLIENT_ERROR, code="invalid_request", param=param)


def unavailable(message: str, *, retry_after: int = 1) -> GatewayError:
    return GatewayError(
        503,
        message,
        Outcome.UNAVAILABLE,
        code="service_unavailable",
        headers={"retry-after": str(max(1, retry_after))},
    )


def shutting_down() -> GatewayError:
    """503 for a request the server cut short at the end of its shutdown grace period."""
    return unavailable("gateway is shutting down; retry the request", retry_after=1)


def internal_error(request_id: str) -> GatewayError:
    """500 naming only the request id: what failed is in the log, never in the answer."""
    return GatewayError(
        500,
        f"internal error (request id {request_id})",
        Outcome.INTERNAL_ERROR,
        code="internal_error",
    )
