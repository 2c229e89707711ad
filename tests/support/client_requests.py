"""Requests shaped like those of Claude Code and Codex (tests/support/clients/).

The captures keep structure, headers and tool lists but replace text by
`<text, N chars>`, keys by `<key>` and ids by `<id>`; `claude_code_request` and
`codex_request` fill them in again: filler words of the same sizes, the given prompt as
the last user text, the given key where the client sent its key.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

CAPTURES = Path(__file__).parent / "clients"
CLAUDE_CODE = CAPTURES / "claude-code-2.1.197.jsonl"
CODEX = CAPTURES / "codex-0.171.0.jsonl"
_PLACEHOLDER = re.compile(r"<text, (\d+) chars>")
_FILLER = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while"]
# Set by the HTTP client, or naming the recording server: not part of the request.
_TRANSPORT_HEADERS = {"host", "content-length", "connection"}


@dataclass(frozen=True)
class ClientRequest:
    method: str
    path: str  # with the query string, as sent
    headers: dict[str, str]
    body: dict[str, Any]


def filler(size: int) -> str:
    """Words (with spaces) of exactly `size` characters."""
    text = ""
    for word in itertools.cycle(_FILLER):
        if len(text) >= size:
            return text[:size]
        text += word + " "
    raise AssertionError("unreachable")  # pragma: no cover


def _fill(value: Any) -> Any:
    if isinstance(value, str):
        match = _PLACEHOLDER.fullmatch(value)
        return filler(int(match[1])) if match else value
    if isinstance(value, list):
        return [_fill(item) for item in value]
    if isinstance(value, dict):
        return {name: _fill(item) for name, item in value.items()}
    return value


def _captured(path: Path, method: str, route: str) -> dict[str, Any]:
    for line in path.read_text().splitlines():
        entry: dict[str, Any] = orjson.loads(line)
        if entry["method"] == method and entry["path"].split("?")[0] == route:
            return entry
    raise LookupError(f"{path.name} has no {method} {route}")


def _headers(captured: dict[str, str], key_header: str, key_value: str) -> dict[str, str]:
    headers = {
        name: value.replace("<id>", "0f8e6c1a-5b7d-4c2e-9a13-d4e5f6a7b8c9")
        for name, value in captured.items()
        if name.lower() not in _TRANSPORT_HEADERS and name.lower() != key_header
    }
    headers[key_header] = key_value
    return headers


def claude_code_request(model: str, prompt: str, key: str) -> ClientRequest:
    """Claude Code 2.1.197's streamed `POST /v1/messages?beta=true`, key in `x-api-key`."""
    entry = _captured(CLAUDE_CODE, "POST", "/v1/messages")
    body = _fill(entry["body"])
    body["model"] = model
    body["messages"][0]["content"][-1]["text"] = prompt
    return ClientRequest("POST", entry["path"], _headers(entry["headers"], "x-api-key", key), body)


def codex_request(model: str, prompt: str, key: str) -> ClientRequest:
    """Codex 0.171.0's streamed `POST /v1/responses`, key as a bearer token."""
    entry = _captured(CODEX, "POST", "/v1/responses")
    body = _fill(entry["body"])
    body["model"] = model
    body["input"][-1]["content"][-1]["text"] = prompt
    headers = _headers(entry["headers"], "authorization", f"Bearer {key}")
    return ClientRequest("POST", entry["path"], headers, body)
