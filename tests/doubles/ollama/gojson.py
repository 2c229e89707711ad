"""Request bodies read the way Ollama reads them: Go's `encoding/json` into its structs.

Ollama decodes a body with `json.NewDecoder(body).Decode(&req)` (gin's
`ShouldBindJSON`) into the request struct of the route. This module does the same on
a description of those structs (`SCHEMAS`; names are Ollama's json tags), so that the
double answers, and records, what Ollama would have read:

- only the first JSON value counts; numbers keep their literal until a field takes them;
- a key sets the field of that exact name, else the one equal under simple case folding
  (U+212A KELVIN SIGN is `k`, U+017F LONG S is `s`); unknown keys are ignored; map keys are
  exact;
- a repeated key decodes again into the same field: scalars are replaced (the last one
  wins), maps and structs are merged, slices are filled again element by element over
  what was there (Go reuses the backing array, so a truncated element comes back);
- `null` sets pointers, maps, slices and interfaces to nil and leaves other fields be;
- a value of the wrong type fails the whole body (Ollama answers 400).

`decide(path, raw)` gives the `Decision` Ollama makes on the fields the gateway cares
about (model, stream flag, output cap, options, ...), or a `GoRefusal`.
The decoding itself is `gotypes.py`; `tests/doubles/test_gojson_against_go.py` holds
both to Go itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .gotypes import (
    ANY,
    BOOL,
    INT,
    STRING,
    AnyValue,
    GoRefusal,
    GoSlice,
    JsonNumber,
    JsonObject,
    Map,
    Pointer,
    Ref,
    Slice,
    Struct,
    cannot_unmarshal,
    fold,
    go_string,
    parse_first_value,
)

__all__ = ["Decision", "GoReading", "GoRefusal", "decide", "fold", "read"]

# Ollama's request structs, with the fields the gateway reads or the double answers from.
_TOOL = Struct("api.Tool", type=STRING)
_STREAM_OPTIONS = Struct("openai.StreamOptions", include_usage=BOOL)
_NATIVE_COMMON = {
    "model": STRING,
    "stream": Pointer(BOOL),
    "keep_alive": Pointer(ANY),
    "options": Map(),
    "_debug_render_only": BOOL,
}
_OPENAI_COMMON = {
    "model": STRING,
    "stream": BOOL,
    "stream_options": Pointer(_STREAM_OPTIONS),
    "max_tokens": Pointer(INT),
    "_debug_render_only": BOOL,
}

SCHEMAS: dict[str, Struct] = {
    "/api/generate": Struct(
        "api.GenerateRequest",
        **_NATIVE_COMMON,
        prompt=STRING,
        suffix=STRING,
        system=STRING,
        template=STRING,
    ),
    "/api/chat": Struct("api.ChatRequest", **_NATIVE_COMMON, messages=ANY, tools=Slice(_TOOL)),
    "/api/embed": Struct(
        "api.EmbedRequest", model=STRING, input=ANY, keep_alive=Pointer(ANY), options=Map()
    ),
    "/api/embeddings": Struct(
        "api.EmbeddingRequest", model=STRING, prompt=STRING, keep_alive=Pointer(ANY), options=Map()
    ),
    "/api/show": Struct("api.ShowRequest", model=STRING, name=STRING, options=Map()),
    "/v1/chat/completions": Struct(
        "openai.ChatCompletionRequest", **_OPENAI_COMMON, messages=ANY, tools=Slice(_TOOL)
    ),
    "/v1/completions": Struct(
        "openai.CompletionRequest", **_OPENAI_COMMON, prompt=STRING, suffix=STRING
    ),
    "/v1/embeddings": Struct(
        "openai.EmbedRequest", model=STRING, input=ANY, encoding_format=STRING
    ),
    "/v1/messages": Struct(
        "anthropic.MessagesRequest",
        model=STRING,
        max_tokens=INT,
        stream=BOOL,
        system=ANY,
        messages=ANY,
        tools=Slice(Struct("anthropic.Tool", type=STRING)),
    ),
    "/v1/responses": Struct(
        "openai.ResponsesRequest",
        model=STRING,
        stream=Pointer(BOOL),
        max_output_tokens=Pointer(INT),
        instructions=STRING,
        input=ANY,
        tools=Slice(Struct("openai.ResponsesTool", type=STRING)),
    ),
}


def decode(path: str, raw: bytes) -> dict[str, Any]:
    """The request struct of `path` as Go fills it from `raw`; GoRefusal when Go fails."""
    value = parse_first_value(raw)
    schema = SCHEMAS[path]
    if not isinstance(value, JsonObject):
        raise cannot_unmarshal(value, schema.name)
    decoded: dict[str, Any] = schema.decode(None, value)
    return decoded


def view(decoded: Any) -> Any:
    """A decoded struct as plain JSON-like values: what the double's handlers read."""
    if isinstance(decoded, Ref):
        return view(decoded.value)
    if isinstance(decoded, GoSlice):
        return [view(item) for item in decoded.items()]
    if isinstance(decoded, dict):
        return {key: view(item) for key, item in decoded.items()}
    return decoded


# -- what Ollama decides -------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What Ollama makes of a body, on the fields the gateway acts on."""

    model: str
    stream: bool
    # The output cap Ollama applies: `options.num_predict` (native) or `max_tokens`.
    cap: int | None = None
    options: dict[str, Any] | None = None
    keep_alive: bool = False
    debug_render_only: bool = False
    tools: tuple[str, ...] = ()
    include_usage: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "stream": self.stream,
            "cap": self.cap,
            "options": self.options,
            "keep_alive": self.keep_alive,
            "debug_render_only": self.debug_render_only,
            "tools": list(self.tools),
            "include_usage": self.include_usage,
        }


_STREAMS_BY_DEFAULT = ("/api/generate", "/api/chat")


def _num_predict(options: dict[str, Any] | None) -> int | None:
    """`options.num_predict` as Ollama's Options.FromMap sets it (float64 → int)."""
    value = (options or {}).get("num_predict")
    if value is None:
        return None
    if not isinstance(value, float):
        raise GoRefusal('option "num_predict" must be of type integer')
    if not -(2.0**63) <= value < 2.0**63:
        raise GoRefusal('option "num_predict" is out of the range of int64')
    return int(value)


def _pointed(value: Any, default: Any) -> Any:
    return value.value if isinstance(value, Ref) else default


@dataclass(frozen=True)
class GoReading:
    """A body as Ollama reads it: the struct (as plain values) and the decision."""

    body: dict[str, Any]
    decision: Decision


def read(path: str, raw: bytes) -> GoReading | GoRefusal | None:
    """Ollama's reading of a body sent to `path`; None for paths without a request struct."""
    schema = SCHEMAS.get(path)
    if schema is None:
        return None
    try:
        sent = parse_first_value(raw)
        if not isinstance(sent, JsonObject):
            raise cannot_unmarshal(sent, schema.name)
        decoded = schema.decode(None, sent)
        return GoReading(_handler_body(schema, sent, decoded), _decision(path, decoded))
    except GoRefusal as refusal:
        return refusal


def natural(value: Any) -> Any:
    """A JSON value with JSON's own number types (ints stay ints), the last repeat kept."""
    if isinstance(value, JsonNumber):
        return int(value) if re.fullmatch(r"-?\d+", value) else float(value)
    if isinstance(value, JsonObject):
        return {go_string(key): natural(item) for key, item in value}
    if isinstance(value, list):
        return [natural(item) for item in value]
    return go_string(value) if isinstance(value, str) else value


def _handler_body(schema: Struct, sent: JsonObject, decoded: dict[str, Any]) -> dict[str, Any]:
    """What the double's handlers read: each field of the struct under its json tag with
    the value Go gives it (a field of type `any` or a slice: the last value sent, whose
    numbers Go would hold as float64); every other key as sent."""
    body: dict[str, Any] = {}
    for key, item in sent:
        tag = schema.tag_of(go_string(key))
        if tag is None:
            body[go_string(key)] = natural(item)
        elif isinstance(schema.fields[tag], AnyValue | Slice):
            body[tag] = natural(item)
        else:
            body[tag] = view(decoded[tag])
    return body


def decide(path: str, raw: bytes) -> Decision:
    """Ollama's decision for a body sent to `path`; GoRefusal when it refuses the body."""
    return _decision(path, decode(path, raw))


def _decision(path: str, body: dict[str, Any]) -> Decision:
    stream = body.get("stream")
    if not isinstance(stream, bool):
        stream = _pointed(stream, path in _STREAMS_BY_DEFAULT)
    if path in _STREAMS_BY_DEFAULT:
        cap = _num_predict(body["options"])
    elif path == "/v1/messages":
        cap = body["max_tokens"]
    else:
        cap = _pointed(body.get("max_tokens") or body.get("max_output_tokens"), None)
    tools = body.get("tools")
    stream_options = _pointed(body.get("stream_options"), None)
    return Decision(
        model=body["model"] or body.get("name") or "",
        stream=stream,
        cap=cap,
        options=body["options"] if path.startswith("/api/") else None,
        keep_alive=body.get("keep_alive") is not None,
        debug_render_only=bool(body.get("_debug_render_only")),
        tools=tuple(t["type"] for t in tools.items()) if isinstance(tools, GoSlice) else (),
        include_usage=bool(stream_options and stream_options["include_usage"]),
    )
