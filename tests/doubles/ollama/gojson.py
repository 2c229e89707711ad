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
`tests/doubles/test_gojson_against_go.py` holds this module to Go itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# -- JSON text, as Go's decoder tokenises it ---------------------------------------------


class GoRefusal(Exception):
    """Go's decoder returns an error for the body: Ollama answers 400 with it."""


class _Object(list[tuple[str, Any]]):
    """A JSON object with every key/value pair in order, repeats included."""


class _Number(str):
    """A JSON number literal, converted when a field takes it."""


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise GoRefusal(f"invalid character in literal {name}")


def _string(text: str) -> str:
    # Go decodes a lone surrogate escape as U+FFFD.
    return _LONE_SURROGATE.sub("\ufffd", text)


def parse_first_value(raw: bytes) -> Any:
    """The first JSON value of `raw`, objects as `_Object`, numbers as `_Number`."""
    try:
        text = raw.decode("utf-8")
        value, _ = json.JSONDecoder(
            object_pairs_hook=_Object,
            parse_int=_Number,
            parse_float=_Number,
            parse_constant=_reject_constant,
        ).raw_decode(text.lstrip(" \t\r\n"))
    except (UnicodeDecodeError, ValueError) as error:
        raise GoRefusal(f"invalid JSON: {error}") from None
    return value


# -- the struct descriptions ---------------------------------------------------------


class Type:
    """A Go type: how a JSON value decodes into a current value of it."""

    def zero(self) -> Any:
        return None

    def decode(self, current: Any, value: Any) -> Any:
        raise NotImplementedError


def _kind(value: Any) -> str:
    """The JSON kind of a value, as Go's errors name it."""
    if isinstance(value, _Number):
        return f"number {value}"
    if isinstance(value, _Object):
        return "object"
    return {str: "string", bool: "bool", list: "array"}.get(type(value), "value")


def cannot_unmarshal(value: Any, go_type: str) -> GoRefusal:
    return GoRefusal(f"json: cannot unmarshal {_kind(value)} into Go value of type {go_type}")


class _Scalar(Type):
    def __init__(self, name: str, zero: Any, accepts: Callable[[Any], Any]) -> None:
        self.name, self._zero, self._accepts = name, zero, accepts

    def zero(self) -> Any:
        return self._zero

    def decode(self, current: Any, value: Any) -> Any:
        if value is None:
            return current
        accepted = self._accepts(value)
        if accepted is None:
            raise cannot_unmarshal(value, self.name)
        return accepted


def _as_string(value: Any) -> str | None:
    if isinstance(value, str) and not isinstance(value, _Number):
        return _string(value)
    return None


def _as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_int(value: Any) -> int | None:
    if isinstance(value, _Number) and re.fullmatch(r"-?\d+", value):
        number = int(value)
        if -(2**63) <= number < 2**63:
            return number
    return None


def plain(value: Any) -> Any:
    """A JSON value as Go's `any` holds it: float64 numbers, the last of repeated keys."""
    if isinstance(value, _Number):
        number = float(value)
        if number in (float("inf"), float("-inf")):
            raise cannot_unmarshal(value, "float64")
        return number
    if isinstance(value, _Object):
        return {_string(key): plain(item) for key, item in value}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, str):
        return _string(value)
    return value


STRING = _Scalar("string", "", _as_string)
BOOL = _Scalar("bool", False, _as_bool)
INT = _Scalar("int", 0, _as_int)


class _Any(Type):
    """`any` (and `json.RawMessage`): the value, replaced on every repeat; null is nil."""

    def decode(self, current: Any, value: Any) -> Any:
        return plain(value)


ANY = _Any()


@dataclass
class Ref:
    """A non-nil Go pointer and what it points to."""

    value: Any


class Pointer(Type):
    def __init__(self, elem: Type) -> None:
        self.elem = elem

    def decode(self, current: Any, value: Any) -> Any:
        if value is None:
            return None
        ref = current if isinstance(current, Ref) else Ref(self.elem.zero())
        ref.value = self.elem.decode(ref.value, value)
        return ref


class Map(Type):
    """`map[string]any`: keys exact, merged into the map a repeat finds."""

    def decode(self, current: Any, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, _Object):
            raise cannot_unmarshal(value, "map[string]interface {}")
        merged = current if isinstance(current, dict) else {}
        for key, item in value:
            merged[_string(key)] = plain(item)
        return merged


@dataclass
class GoSlice:
    """A Go slice: `length` elements of a backing array that may hold more."""

    backing: list[Any] = field(default_factory=list)
    length: int = 0

    def items(self) -> list[Any]:
        return self.backing[: self.length]


class Slice(Type):
    def __init__(self, elem: Type) -> None:
        self.elem = elem

    def decode(self, current: Any, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list) or isinstance(value, _Object):
            raise cannot_unmarshal(value, "slice")
        if not value:
            return GoSlice()  # Go makes a new empty slice
        target = current if isinstance(current, GoSlice) else GoSlice()
        for index, item in enumerate(value):
            if index == len(target.backing):
                target.backing.append(self.elem.zero())
            target.length = max(target.length, index + 1)
            target.backing[index] = self.elem.decode(target.backing[index], item)
        target.length = len(value)
        return target


def fold(key: str) -> str:
    """Simple case folding, one character at a time (what Go's key matching compares)."""
    return "".join(c if len(f := c.casefold()) != 1 else f for c in key)


class Struct(Type):
    def __init__(self, go_name: str, **fields: Type) -> None:
        self.name = go_name
        self.fields = fields
        self.folded = {fold(tag): tag for tag in fields}

    def zero(self) -> dict[str, Any]:
        return {tag: kind.zero() for tag, kind in self.fields.items()}

    def tag_of(self, key: str) -> str | None:
        """The field a key sets: its exact name, else the one equal under folding."""
        return key if key in self.fields else self.folded.get(fold(key))

    def decode(self, current: Any, value: Any) -> Any:
        if value is None:
            return current
        if not isinstance(value, _Object):
            raise cannot_unmarshal(value, self.name)
        target = current if isinstance(current, dict) else self.zero()
        for key, item in value:
            tag = self.tag_of(_string(key))
            if tag is not None:
                target[tag] = self.fields[tag].decode(target[tag], item)
        return target


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
    if not isinstance(value, _Object):
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
        if not isinstance(sent, _Object):
            raise cannot_unmarshal(sent, schema.name)
        decoded = schema.decode(None, sent)
        return GoReading(_handler_body(schema, sent, decoded), _decision(path, decoded))
    except GoRefusal as refusal:
        return refusal


def natural(value: Any) -> Any:
    """A JSON value with JSON's own number types (ints stay ints), the last repeat kept."""
    if isinstance(value, _Number):
        return int(value) if re.fullmatch(r"-?\d+", value) else float(value)
    if isinstance(value, _Object):
        return {_string(key): natural(item) for key, item in value}
    if isinstance(value, list):
        return [natural(item) for item in value]
    return _string(value) if isinstance(value, str) else value


def _handler_body(schema: Struct, sent: _Object, decoded: dict[str, Any]) -> dict[str, Any]:
    """What the double's handlers read: each field of the struct under its json tag with
    the value Go gives it (a field of type `any` or a slice: the last value sent, whose
    numbers Go would hold as float64); every other key as sent."""
    body: dict[str, Any] = {}
    for key, item in sent:
        tag = schema.tag_of(_string(key))
        if tag is None:
            body[_string(key)] = natural(item)
        elif isinstance(schema.fields[tag], _Any | Slice):
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
