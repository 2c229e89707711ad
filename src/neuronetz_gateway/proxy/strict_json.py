"""Parsing request bodies so that each one has a single meaning (docs/REFERENCE.md §11).

orjson parses: it refuses invalid UTF-8, lone surrogates, NaN and anything after the
first value, all of which Go's decoder would read differently. Then two more refusals,
both 400 before admission:

- nesting deeper than `MAX_JSON_DEPTH` (later stages walk and re-encode the body);
- an object with two keys equal under `str.casefold`, exact duplicates included, named
  in the answer. Ollama's decoder (Go's `encoding/json`) matches keys to fields without
  regard to case, lets the last duplicate win and merges repeated maps; a dict keeps
  case variants apart and only the last of exact duplicates. Refusing every such body
  is the only way the gateway and Ollama read the same fields.

Case variants are visible in the parsed value and found by one walk over it. Exact
duplicates are not (the dict kept one), so they are found by counting: every ':' of a
JSON text either separates a key from its value or is a character inside a string, and
orjson writes ':' in strings as is. Without a repeated key the body and its re-encoding
therefore hold the same number of ':'; a dropped duplicate takes at least its own away.
A string that spells ':' as `\\u003a` would upset the count, so such a body takes the
exact check instead (also used to name the key): a parse that keeps every pair.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from neuronetz_gateway.errors import GatewayError, bad_request

_SHOWN_KEY_CHARS = 64
_ESCAPED_COLON = re.compile(rb"\\u003[aA]")


class _TooDeep(Exception):
    pass


class _Repeated(Exception):
    pass


def parse(raw: bytes, max_depth: int) -> Any:
    """The parsed body; 400 for invalid JSON, nesting deeper than `max_depth` levels, or
    an object with a repeated key (in any case)."""
    if not raw.strip():
        raise bad_request("request body is empty; a JSON object is required")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        if "depth" in str(error):  # orjson stops at 1024 levels
            raise too_deep(max_depth) from None
        raise bad_request("request body is not valid JSON") from None
    if type(value) is dict or type(value) is list:
        try:
            _check(value, 1, max_depth)
            repeated = _may_repeat_a_key(raw, value)
        except _TooDeep:
            raise too_deep(max_depth) from None
        except _Repeated:
            repeated = True
        if repeated:
            _refuse_repeated_keys(raw)
    return value


def too_deep(max_depth: int) -> GatewayError:
    return bad_request(f"request body is nested too deeply (limit {max_depth} levels)")


def _check(value: dict[str, Any] | list[Any], depth: int, limit: int) -> None:
    """Raise `_TooDeep` past `limit` levels, `_Repeated` for keys equal under casefold."""
    if depth > limit:
        raise _TooDeep
    if type(value) is dict:
        keys = "".join(value)
        if not (keys.isascii() and keys.lower() == keys):  # lower-case ASCII: all distinct
            folded = {k.lower() if keys.isascii() else k.casefold() for k in value}
            if len(folded) != len(value):
                raise _Repeated
        children: Any = value.values()
    else:
        children = value
    for child in children:
        if type(child) is dict or type(child) is list:
            _check(child, depth + 1, limit)


def _may_repeat_a_key(raw: bytes, value: Any) -> bool:
    """Whether `raw` may hold a key twice in one object (see the module docstring)."""
    if _colons(raw) != _colons(orjson.dumps(value)):
        return True
    return b"\\" in raw and _ESCAPED_COLON.search(raw) is not None


def _colons(text: bytes) -> int:
    # Deleting a single byte runs at memchr speed, several times faster than count().
    return len(text) - len(text.replace(b":", b""))


class _Pairs(list[tuple[str, Any]]):
    """A JSON object with every key/value pair as sent, repeats included."""


def _refuse_repeated_keys(raw: bytes) -> None:
    """The exact check: raise the 400 naming a repeated key, if there is one."""
    found = _first_repeat(json.loads(raw, object_pairs_hook=_Pairs), "")
    if found is not None:
        raise _duplicate_key_error(*found)


def _first_repeat(value: Any, path: str) -> tuple[str, str, str] | None:
    """(path, earlier key, later key) of the first repeated key, depth first."""
    if isinstance(value, _Pairs):
        seen: dict[str, str] = {}
        for key, _ in value:
            folded = key.casefold()
            if folded in seen:
                return path, seen[folded], key
            seen[folded] = key
        items: list[tuple[str, Any]] = [(f"{path}.{key}" if path else key, v) for key, v in value]
    elif isinstance(value, list):
        items = [(f"{path}[{index}]", v) for index, v in enumerate(value)]
    else:
        return None
    for child_path, child in items:
        found = _first_repeat(child, child_path)
        if found is not None:
            return found
    return None


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_KEY_CHARS else text[:_SHOWN_KEY_CHARS] + "…"


def _duplicate_key_error(path: str, earlier: str, later: str) -> GatewayError:
    where = _shown(f"{path}.{later}" if path else later)
    message = f'request body has the key "{where}" more than once'
    if earlier != later:
        message += (
            f' (keys are matched case-insensitively: "{_shown(earlier)}" and'
            f' "{_shown(later)}" are the same key)'
        )
    return bad_request(message, param=where)
