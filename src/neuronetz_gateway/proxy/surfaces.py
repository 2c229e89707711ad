"""What differs between the APIs a model route speaks, on the way back (docs/REFERENCE.md
§4.7, §12): which observer reads the answer and how a stream is told of a failure.

Native streams are NDJSON and end in-band with an `{"error": ...}` line; OpenAI chat
streams are `data:` frames and end with a `data: {"error": {...}}` frame; Anthropic
Messages streams end with an `error` event; Responses streams with `response.failed`.
"""

from __future__ import annotations

from neuronetz_gateway.errors import GatewayError, Surface, bad_request, render
from neuronetz_gateway.policy import routes
from neuronetz_gateway.policy.routes import Route
from neuronetz_gateway.proxy.messages import MessagesObserver, error_event
from neuronetz_gateway.proxy.observer import StreamObserver
from neuronetz_gateway.proxy.responses import ResponsesObserver, failed_event


def observer_for(
    route: Route, *, collect_text: bool, keep_usage_chunk: bool = True
) -> StreamObserver:
    """The observer that reads `route`'s answers."""
    if route is routes.V1_MESSAGES:
        return MessagesObserver(collect_text=collect_text)
    if route is routes.V1_RESPONSES:
        return ResponsesObserver(collect_text=collect_text)
    return StreamObserver(collect_text=collect_text, keep_usage_chunk=keep_usage_chunk)


def in_band(route: Route | None, surface: Surface, failure: GatewayError, request_id: str) -> bytes:
    """`failure` as the last line, frame or event of a stream of `route`."""
    if route is routes.V1_MESSAGES:
        return error_event(failure)
    if route is routes.V1_RESPONSES:
        return failed_event(failure, request_id)
    if surface is Surface.NATIVE:
        return render(failure, surface) + b"\n"
    return b"data: " + render(failure, surface) + b"\n\n"


def check_output_cap(route: Route, client_cap: int | None) -> None:
    """Messages requests must name their cap (`max_tokens`), as Anthropic's API requires."""
    if route is routes.V1_MESSAGES and client_cap is None:
        raise bad_request(
            "max_tokens is required and must be a positive integer", param="max_tokens"
        )
