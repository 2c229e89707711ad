"""What a request body asks for, read the way Ollama will read it (docs/REFERENCE.md
§4.4, §4.6, §11).

The body is parsed once (`strict_json`: one meaning per body), then every field the
gateway acts on is found with Go's key matching (`gofields`) in the route's shape
(`shapes`): a lone `"Model"` is the model, a lone `"Options"` the options. A field the
gateway reads must have the type Go's decoder accepts for it, else 400 (Ollama would
refuse the body too); `null` leaves a field at its default, as in Go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neuronetz_gateway.errors import bad_request
from neuronetz_gateway.policy.routes import Route
from neuronetz_gateway.proxy import strict_json
from neuronetz_gateway.proxy.gofields import Fields, field_name
from neuronetz_gateway.proxy.shapes import BodyShape, OutputCap, shape_of

_INT64 = 2**63
# Ollama reads `options` values as float64 and converts them; within 2**53 that is exact.
_EXACT_FLOAT = 2**53
# Where messages, content blocks and input items hold text the model reads: also the
# thinking of Anthropic blocks, and the arguments and output of Responses function calls.
_TEXT_KEYS = ("text", "content", "thinking", "arguments", "output")


@dataclass(slots=True)
class ModelRequest:
    """A request body with the fields the gateway acts on, as Ollama reads them."""

    raw: bytes  # as the client sent it, forwarded when nothing changes
    data: dict[str, Any]
    fields: Fields
    shape: BodyShape
    model: str
    stream: bool
    client_cap: int | None  # the client's output cap, when a positive one

    def prompt_text_bytes(self) -> int:
        """UTF-8 bytes of the prompt text (docs/REFERENCE.md §4.6): messages, prompt,
        system, input, ... and tools; images and other binary parts do not count."""
        total = 0
        for name in self.shape.text:
            total += _text_bytes(self.fields.get(name))
        if self.shape.tools is not None and (tools := self.fields.get(self.shape.tools)):
            total += len(repr(tools).encode())
        return total


def read_request(raw: bytes, route: Route, max_depth: int) -> ModelRequest:
    """The request body of `route`, or a 400 when it has no single meaning or lacks a
    model."""
    data = strict_json.parse(raw, max_depth)
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object")
    shape = shape_of(route.name)
    fields = Fields(data)
    stream = route.streams_by_default
    if shape.stream is not None:
        stream = _boolean(fields, shape.stream, default=stream)
    if shape.usage_option:
        _check_stream_options(fields)
    return ModelRequest(
        raw=raw,
        data=data,
        fields=fields,
        shape=shape,
        model=_model(fields, shape),
        stream=stream,
        client_cap=client_cap(fields, shape.output_cap),
    )


def _model(fields: Fields, shape: BodyShape) -> str:
    """The first non-empty model field, as Ollama takes it; 400 when it is blank."""
    model = ""
    for name in shape.model:
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise bad_request(f"{name} must be a string", param=name)
        if value:
            model = value
            break
    if not model.strip():
        raise bad_request("model is required", param="model")
    return model


def _boolean(fields: Fields, name: str, *, default: bool) -> bool:
    value = fields.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be a boolean", param=name)
    return value


def _check_stream_options(fields: Fields) -> None:
    options = fields.get("stream_options")
    if options is None:
        return
    if not isinstance(options, dict):
        raise bad_request("stream_options must be an object", param="stream_options")
    include = Fields(options).get("include_usage")
    if include is not None and not isinstance(include, bool):
        raise bad_request(
            "stream_options.include_usage must be a boolean", param="stream_options.include_usage"
        )


def client_cap(fields: Fields, cap: OutputCap | None) -> int | None:
    """The client's output cap as Ollama will apply it, when positive (none: None)."""
    if cap is None:
        return None
    if cap.option is not None:
        value = _option_integer(fields, cap.field, cap.option)
    else:
        value = _integer(fields, cap.field)
        for alias in cap.aliases:
            aliased = _integer(fields, alias)
            value = aliased if value is None else value
    return value if value is not None and value > 0 else None


def _integer(fields: Fields, name: str) -> int | None:
    """A field Go decodes into an `int`: an integer literal in int64's range."""
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -_INT64 <= value < _INT64:
        raise bad_request(f"{name} must be an integer", param=name)
    return value


def _option_integer(fields: Fields, name: str, option: str) -> int | None:
    """An integer option of a map Ollama reads as float64 and truncates."""
    options = fields.get(name)
    if options is None:
        return None
    if not isinstance(options, dict):
        raise bad_request(f"{name} must be an object", param=name)
    value = options.get(option)  # a map: Go looks its keys up exactly
    if value is None:
        return None
    path = f"{name}.{option}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{path} must be an integer", param=path)
    if not -_EXACT_FLOAT <= value <= _EXACT_FLOAT:
        raise bad_request(f"{path} is out of range", param=path)
    return int(value)


def _text_bytes(value: Any) -> int:
    # Loops, not sum() over generators: this runs for every request, on every message.
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    total = 0
    if isinstance(value, list):
        for item in value:
            total += _text_bytes(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if field_name(key) in _TEXT_KEYS:
                total += _text_bytes(item)
    return total
