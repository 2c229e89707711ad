"""Go's `encoding/json` on described types: how a JSON value decodes into a Go value.

`parse_first_value` reads the first JSON value as Go's decoder tokenises it (objects
keep every key in order, numbers keep their literal); `Type` and its kinds (`STRING`,
`BOOL`, `INT`, `ANY`, `Pointer`, `Map`, `Slice`, `Struct`) decode such a value into the
current value of a field the way `json.Unmarshal` does, repeats and nulls included.
`gojson.py` describes Ollama's request structs with them.
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


class JsonObject(list[tuple[str, Any]]):
    """A JSON object with every key/value pair in order, repeats included."""


class JsonNumber(str):
    """A JSON number literal, converted when a field takes it."""


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise GoRefusal(f"invalid character in literal {name}")


def go_string(text: str) -> str:
    # Go decodes a lone surrogate escape as U+FFFD.
    return _LONE_SURROGATE.sub("\ufffd", text)


def parse_first_value(raw: bytes) -> Any:
    """The first JSON value of `raw`, objects as `JsonObject`, numbers as `JsonNumber`."""
    try:
        text = raw.decode("utf-8")
        value, _ = json.JSONDecoder(
            object_pairs_hook=JsonObject,
            parse_int=JsonNumber,
            parse_float=JsonNumber,
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
    if isinstance(value, JsonNumber):
        return f"number {value}"
    if isinstance(value, JsonObject):
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
    if isinstance(value, str) and not isinstance(value, JsonNumber):
        return go_string(value)
    return None


def _as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_int(value: Any) -> int | None:
    if isinstance(value, JsonNumber) and re.fullmatch(r"-?\d+", value):
        number = int(value)
        if -(2**63) <= number < 2**63:
            return number
    return None


def plain(value: Any) -> Any:
    """A JSON value as Go's `any` holds it: float64 numbers, the last of repeated keys."""
    if isinstance(value, JsonNumber):
        number = float(value)
        if number in (float("inf"), float("-inf")):
            raise cannot_unmarshal(value, "float64")
        return number
    if isinstance(value, JsonObject):
        return {go_string(key): plain(item) for key, item in value}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, str):
        return go_string(value)
    return value


STRING = _Scalar("string", "", _as_string)
BOOL = _Scalar("bool", False, _as_bool)
INT = _Scalar("int", 0, _as_int)


class AnyValue(Type):
    """`any` (and `json.RawMessage`): the value, replaced on every repeat; null is nil."""

    def decode(self, current: Any, value: Any) -> Any:
        return plain(value)


ANY = AnyValue()


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
        if not isinstance(value, JsonObject):
            raise cannot_unmarshal(value, "map[string]interface {}")
        merged = current if isinstance(current, dict) else {}
        for key, item in value:
            merged[go_string(key)] = plain(item)
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
        if not isinstance(value, list) or isinstance(value, JsonObject):
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
        if not isinstance(value, JsonObject):
            raise cannot_unmarshal(value, self.name)
        target = current if isinstance(current, dict) else self.zero()
        for key, item in value:
            tag = self.tag_of(go_string(key))
            if tag is not None:
                target[tag] = self.fields[tag].decode(target[tag], item)
        return target
