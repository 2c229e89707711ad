"""Watching an Anthropic Messages answer (docs/REFERENCE.md §12).

Tokens are those of the final `usage`: the response's, or in a stream the one of
`message_delta` (`message_start` carries only an estimate, kept as the prompt count
should `message_delta` not name one). A stream relays event by event; only the few
events that can hold counts, an error or the end are parsed (every event, when prompt
logging needs the text). A stream that ends without `message_stop` was cut off
upstream: the client is told with an `error` event, as Anthropic's API tells it.
"""

from __future__ import annotations

from typing import Any

import orjson

from neuronetz_gateway.errors import GatewayError, Surface, render
from neuronetz_gateway.proxy.observer import StreamObserver, sse_data
from neuronetz_gateway.proxy.sanitize import sanitize_message
from neuronetz_gateway.proxy.usage import Usage, count

# Marks of the events parsed on the fast path: counts (message_start, message_delta),
# the end of the message, and errors.
_USAGE = b'"usage"'
_STOP = b"event: message_stop"
_ERROR = b"event: error"
# With its line end: JSON text cannot hold a raw newline, so a model writing these
# words is not counted as an event.
_DELTA = b"event: content_block_delta\n"


def error_event(failure: GatewayError) -> bytes:
    """`failure` as the `error` event that ends a Messages stream."""
    return b"event: error\ndata: " + render(failure, Surface.ANTHROPIC) + b"\n\n"


def messages_usage(usage: Any, prompt_default: int | None = None) -> Usage | None:
    """Counts from an Anthropic `usage` object (`input_tokens`, `output_tokens`)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("input_tokens")
    return Usage(
        count(prompt) if prompt is not None else prompt_default or 0,
        count(usage.get("output_tokens")),
    )


class MessagesObserver(StreamObserver):
    def __init__(self, *, collect_text: bool = False) -> None:
        super().__init__(collect_text=collect_text)
        self.estimated_prompt: int | None = None  # message_start's input_tokens
        self.stopped = False

    def sse(self, block: bytes) -> bytes:
        """Complete events in, events to relay out (an upstream error sanitised)."""
        if (
            not self.collect_text
            and _USAGE not in block
            and _STOP not in block
            and _ERROR not in block
        ):
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
        if kind == "content_block_delta":
            self.content_chunks += 1
            delta = event.get("delta")
            if self.collect_text and isinstance(delta, dict) and isinstance(delta.get("text"), str):
                self.text.append(delta["text"])
        elif kind == "message_start" and isinstance(event.get("message"), dict):
            estimate = messages_usage(event["message"].get("usage"))
            self.estimated_prompt = estimate.prompt_tokens if estimate is not None else None
        elif kind == "message_delta":
            self.usage = messages_usage(event.get("usage"), self.estimated_prompt) or self.usage
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            self.error = True
            return _sanitized(event.get("error"))
        return frame

    def whole(self, data: Any, *, openai: bool = False) -> None:
        """Counts (and text) of a non-streamed Messages response."""
        if not isinstance(data, dict):
            return
        self.usage = messages_usage(data.get("usage"))
        if self.collect_text and isinstance(data.get("content"), list):
            self.text += [
                block["text"]
                for block in data["content"]
                if isinstance(block, dict)
                and block.get("type") == "text"
                and isinstance(block.get("text"), str)
            ]

    @property
    def ended(self) -> bool:
        """True once the stream has ended as a Messages stream ends (`message_stop`)."""
        return self.stopped


def _sanitized(error: Any) -> bytes:
    message = error.get("message") if isinstance(error, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    safe_kind = (
        kind if isinstance(kind, str) and kind.isascii() and len(kind) <= 64 else "api_error"
    )
    body = {"type": "error", "error": {"type": safe_kind, "message": sanitize_message(message)}}
    return b"event: error\ndata: " + orjson.dumps(body)
