"""Watching an OpenAI Responses answer (docs/REFERENCE.md §12).

Tokens are those of the response's `usage` (`input_tokens`, `output_tokens`); in a
stream, of the terminal event's response (`response.completed`, or `response.incomplete`
/ `response.failed`). Only events that can hold a response or an error are parsed on the
way (every event, when prompt logging needs the text). A stream that ends without a
terminal event was cut off upstream: the client is told with `response.failed`, the
event the Responses API ends a failed response with.
"""

from __future__ import annotations

from typing import Any

import orjson

from neuronetz_gateway.errors import GatewayError
from neuronetz_gateway.proxy.observer import StreamObserver, sse_data
from neuronetz_gateway.proxy.sanitize import sanitize_message
from neuronetz_gateway.proxy.usage import Usage, count

# Events carrying a response object all carry its `usage` key (null until the end).
_RESPONSE = b'"usage"'
_ERROR = b"event: error"
_DELTA = b".delta\ndata:"
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_TEXT_DELTA = "response.output_text.delta"


def failed_event(failure: GatewayError, request_id: str) -> bytes:
    """`failure` as the `response.failed` event that ends a Responses stream."""
    response: dict[str, Any] = {
        "id": f"resp_{request_id}",
        "object": "response",
        "status": "failed",
        "error": {"code": failure.code or "server_error", "message": failure.message},
        "output": [],
        "usage": None,
    }
    data = {"type": "response.failed", "response": response}
    return b"event: response.failed\ndata: " + orjson.dumps(data) + b"\n\n"


def responses_usage(response: Any) -> Usage | None:
    """Counts from the `usage` of a Responses response object."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    return Usage(count(usage.get("input_tokens")), count(usage.get("output_tokens")))


class ResponsesObserver(StreamObserver):
    def __init__(self, *, collect_text: bool = False) -> None:
        super().__init__(collect_text=collect_text)
        self.terminal = False

    def sse(self, block: bytes) -> bytes:
        """Complete events in, events to relay out (an upstream failure sanitised)."""
        if not self.collect_text and _RESPONSE not in block and _ERROR not in block:
            self.content_chunks += block.count(_DELTA)
            return block
        frames = block.split(b"\n\n")
        return b"".join(self._event(frame) + b"\n\n" for frame in frames[:-1])

    def _event(self, frame: bytes) -> bytes:
        payload = sse_data(frame)
        try:
            event = orjson.loads(payload) if payload is not None else None
        except orjson.JSONDecodeError:
            return frame
        if not isinstance(event, dict):
            return frame
        kind = event.get("type")
        if isinstance(kind, str) and kind.endswith(".delta"):
            self.content_chunks += 1
            if self.collect_text and kind == _TEXT_DELTA and isinstance(event.get("delta"), str):
                self.text.append(event["delta"])
        elif kind in _TERMINAL:
            self.terminal = True
            self.usage = responses_usage(event.get("response")) or self.usage
            if kind == "response.failed":
                self.error = True
                return _sanitized_failure(frame, event)
        elif kind == "error":
            self.error = True
            message = sanitize_message(event.get("message"))
            return b"event: error\ndata: " + orjson.dumps({"type": "error", "message": message})
        return frame

    def whole(self, data: Any, *, openai: bool = True) -> None:
        """Counts (and text) of a non-streamed Responses response."""
        self.usage = responses_usage(data)
        if self.collect_text and isinstance(data, dict) and isinstance(data.get("output"), list):
            self.text += _output_text(data["output"])

    @property
    def ended(self) -> bool:
        """True once the stream has ended with a terminal event."""
        return self.terminal


def _output_text(output: list[Any]) -> list[str]:
    return [
        part["text"]
        for item in output
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or ()
        if isinstance(part, dict)
        and part.get("type") == "output_text"
        and isinstance(part.get("text"), str)
    ]


def _sanitized_failure(frame: bytes, event: dict[str, Any]) -> bytes:
    response = event.get("response")
    error = response.get("error") if isinstance(response, dict) else None
    if not isinstance(error, dict) or not isinstance(response, dict):
        return frame
    error["message"] = sanitize_message(error.get("message"))
    return b"event: response.failed\ndata: " + orjson.dumps(event)
