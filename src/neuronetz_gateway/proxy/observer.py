"""Watching a relayed response: token counts, in-band errors, and the response text.

The observer sees complete NDJSON lines or SSE frames and returns what to send on.
Most blocks pass through untouched: only blocks that can hold a final count, a usage
object or an error are parsed (or every block, when prompt logging needs the text).
"""

from __future__ import annotations

from typing import Any

import orjson

from neuronetz_gateway.proxy.sanitize import sanitize_message
from neuronetz_gateway.proxy.usage import Usage, native_usage, openai_usage

_DONE_TIGHT = b'"done":true'
_DONE_SPACED = b'"done": true'
_ERROR_MARK = b'"error"'
_USAGE_MARK = b'"usage"'
SSE_DONE = b"[DONE]"


class StreamObserver:
    def __init__(self, *, collect_text: bool = False, keep_usage_chunk: bool = True) -> None:
        self.collect_text = collect_text
        self.keep_usage_chunk = keep_usage_chunk
        self.usage: Usage | None = None
        self.error = False
        self.content_chunks = 0
        self.text: list[str] = []

    # -- native NDJSON ------------------------------------------------------------

    def ndjson(self, block: bytes) -> bytes:
        """Complete lines in, lines to relay out (an error line is sanitised)."""
        # Plain `in` tests, not a loop over marks: this runs once per relayed chunk.
        if (
            not self.collect_text
            and _ERROR_MARK not in block
            and _DONE_TIGHT not in block
            and _DONE_SPACED not in block
        ):
            self.content_chunks += block.count(b"\n")
            return block
        return b"".join(self._native_line(line) for line in block.splitlines(keepends=True))

    def _native_line(self, line: bytes) -> bytes:
        if not line.strip():
            return line
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            return line
        if not isinstance(message, dict):
            return line
        if "error" in message and "done" not in message:
            self.error = True
            return orjson.dumps({"error": sanitize_message(message["error"])}) + b"\n"
        if message.get("done") is True:
            self.usage = native_usage(message) or self.usage
        else:
            self.content_chunks += 1
        if self.collect_text:
            self._collect_native(message)
        return line

    def _collect_native(self, message: dict[str, Any]) -> None:
        piece = message.get("response")
        if piece is None and isinstance(message.get("message"), dict):
            piece = message["message"].get("content")
        if isinstance(piece, str) and piece:
            self.text.append(piece)

    # -- OpenAI SSE ---------------------------------------------------------------

    def sse(self, block: bytes) -> bytes:
        """Complete frames in, frames to relay out (usage chunk dropped if not asked for)."""
        if not self.collect_text and _ERROR_MARK not in block and _USAGE_MARK not in block:
            self.content_chunks += block.count(b"\n\n") - block.count(SSE_DONE)
            return block
        frames = block.split(b"\n\n")
        out = [self._sse_frame(frame) for frame in frames[:-1]]
        return b"".join(frame + b"\n\n" for frame in out if frame is not None)

    def _sse_frame(self, frame: bytes) -> bytes | None:
        payload = sse_data(frame)
        if payload is None or payload == SSE_DONE:
            return frame
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return frame
        if not isinstance(message, dict):
            return frame
        if "error" in message:
            self.error = True
            return b"data: " + orjson.dumps(_sanitized_openai_error(message["error"]))
        usage = openai_usage(message)
        choices = message.get("choices")
        if usage is not None:
            self.usage = usage
            if not self.keep_usage_chunk:
                if not choices:
                    return None
                message.pop("usage", None)
                frame = b"data: " + orjson.dumps(message)
        if choices:
            self.content_chunks += 1
            if self.collect_text:
                self._collect_openai(choices)
        return frame

    def _collect_openai(self, choices: Any) -> None:
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        for holder in (choice.get("delta"), choice.get("message")):
            if isinstance(holder, dict) and isinstance(holder.get("content"), str):
                self.text.append(holder["content"])
                return
        if isinstance(choice.get("text"), str):
            self.text.append(choice["text"])

    @property
    def ended(self) -> bool:
        """False when a stream broke off before its API's terminal event (the surfaces
        whose streams have one override this)."""
        return True

    # -- whole responses ----------------------------------------------------------

    def whole(self, data: Any, *, openai: bool) -> None:
        """Record counts (and text) of a non-streamed response."""
        self.usage = openai_usage(data) if openai else native_usage(data)
        if not self.collect_text or not isinstance(data, dict):
            return
        if openai:
            self._collect_openai(data.get("choices"))
        else:
            self._collect_native(data)


def sse_data(frame: bytes) -> bytes | None:
    """The payload of an SSE frame's `data:` line, if it has one."""
    for line in frame.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


def _sanitized_openai_error(error: Any) -> dict[str, Any]:
    message = error.get("message") if isinstance(error, dict) else error
    code = error.get("code") if isinstance(error, dict) else None
    return {
        "error": {
            "message": sanitize_message(message),
            "type": "server_error",
            "param": None,
            "code": code if isinstance(code, str) and len(code) <= 64 else None,
        }
    }
