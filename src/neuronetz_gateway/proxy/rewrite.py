"""What the gateway reads from and changes in a request body before forwarding it.

The body is parsed once. It is re-encoded only when a field changed (the output cap
of docs/REFERENCE.md §4.6, `stream_options.include_usage` and `max_completion_tokens` of §4.7);
otherwise the client's original bytes are forwarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neuronetz_gateway.errors import bad_request

# Fields whose text becomes prompt tokens (images and other binary parts do not count).
_TEXT_FIELDS = ("prompt", "system", "suffix", "input", "template")


@dataclass(slots=True)
class ParsedBody:
    data: dict[str, Any]
    model: str
    stream: bool
    raw: bytes = b""  # the bytes as the client sent them, forwarded when nothing changed


def parse_model_body(data: Any, *, streams_by_default: bool) -> ParsedBody:
    """The body's model and streaming flag, or a 400 when it is not a model request."""
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object")
    model = data.get("model")
    if model is None and "name" in data:  # /api/show's legacy spelling
        model = data.get("name")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model is required", param="model")
    stream = data.get("stream", streams_by_default)
    if not isinstance(stream, bool):
        raise bad_request("stream must be a boolean", param="stream")
    return ParsedBody(data=data, model=model, stream=stream)


def _text_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, list):
        return sum(_text_bytes(item) for item in value)
    if isinstance(value, dict):
        # OpenAI content parts: {"type": "text", "text": ...}; images are skipped.
        return _text_bytes(value.get("text")) + _text_bytes(value.get("content"))
    return 0


def request_text_bytes(data: dict[str, Any]) -> int:
    """UTF-8 bytes of the request's text: messages, prompt, system, input, tools."""
    total = sum(_text_bytes(data.get(name)) for name in _TEXT_FIELDS)
    for message in data.get("messages") or ():
        if isinstance(message, dict):
            total += _text_bytes(message.get("content"))
    tools = data.get("tools")
    if tools:
        total += len(repr(tools).encode())
    return total


def client_output_cap_native(data: dict[str, Any]) -> int | None:
    """The client's `options.num_predict`, when it is a finite positive cap."""
    options = data.get("options")
    if isinstance(options, dict):
        value = options.get("num_predict")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def client_output_cap_openai(data: dict[str, Any]) -> int | None:
    """The client's `max_tokens` (or `max_completion_tokens`), when positive."""
    for name in ("max_tokens", "max_completion_tokens"):
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def apply_native(data: dict[str, Any], output_cap: int | None) -> bool:
    """Set `options.num_predict` to the cap; True when the body changed."""
    if output_cap is None:
        return False
    options = data.get("options")
    if not isinstance(options, dict):
        options = {}
        data["options"] = options
    if options.get("num_predict") == output_cap:
        return False
    options["num_predict"] = output_cap
    return True


def apply_openai(data: dict[str, Any], output_cap: int | None, stream: bool) -> tuple[bool, bool]:
    """Map `max_completion_tokens`, apply the cap, ask for stream usage.

    Returns (body changed, client asked for usage in its stream).
    """
    changed = False
    if "max_completion_tokens" in data:
        value = data.pop("max_completion_tokens")
        if "max_tokens" not in data and value is not None:
            data["max_tokens"] = value
        changed = True
    if output_cap is not None and data.get("max_tokens") != output_cap:
        data["max_tokens"] = output_cap
        changed = True
    wants_usage = False
    if stream:
        options = data.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        if not wants_usage:
            merged = dict(options) if isinstance(options, dict) else {}
            merged["include_usage"] = True
            data["stream_options"] = merged
            changed = True
    return changed, wants_usage
