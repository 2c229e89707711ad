"""What the gateway changes in a request body before forwarding it.

- Fields that change the shared server's state are removed (docs/REFERENCE.md §11):
  `keep_alive`, `_debug_render_only`, the runner options in `options`, unless
  `CLIENT_RUNTIME_OPTIONS=pass`; tool entries of a `web_` type, unless
  `ALLOW_WEB_TOOLS=true`. The response names them in `x-neuronetz-ignored-fields`.
- The output cap of a budget is written (§4.6), into the key the client used for it.
- `max_completion_tokens` becomes `max_tokens`; OpenAI streams ask for usage (§4.7).

Every field is found as Ollama finds it (`gofields`), so a change lands in the field
Ollama reads. The body is re-encoded only when something changed; otherwise the
client's bytes are forwarded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from neuronetz_gateway.config import Settings
from neuronetz_gateway.proxy.gofields import Fields, field_name, fields_of
from neuronetz_gateway.proxy.reading import ModelRequest
from neuronetz_gateway.proxy.shapes import RUNNER_OPTIONS, OutputCap

IGNORED_FIELDS_HEADER = b"x-neuronetz-ignored-fields"
_WEB_TOOL_PREFIX = "web_"
_UNSAFE_IN_HEADER = re.compile(r"[^A-Za-z0-9_.:-]")
_SHOWN_TYPE_CHARS = 64


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The body to send upstream and what the gateway told itself about it."""

    body: bytes
    ignored: tuple[str, ...]  # removed fields, e.g. ("keep_alive", "options.num_ctx")
    wants_usage: bool  # an OpenAI stream whose client asked for the usage chunk
    output_cap: int | None  # the cap Ollama will apply: the budget's or the client's

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """Response headers that tell the client what was removed."""
        if not self.ignored:
            return []
        return [(IGNORED_FIELDS_HEADER, ", ".join(self.ignored).encode())]


def prepare(request: ModelRequest, output_cap: int | None, settings: Settings) -> Forwarded:
    """Apply every change to `request.data`; the bytes to forward and what changed."""
    ignored: list[str] = []
    if settings.client_runtime_options == "drop":
        ignored += _drop_runtime_fields(request)
    if not settings.allow_web_tools:
        ignored += _drop_web_tools(request)
    changed = bool(ignored)
    cap = request.shape.output_cap
    if cap is not None:
        changed |= _move_aliases(request.fields, cap)
        if output_cap is not None:
            changed |= _write_cap(request.fields, cap, output_cap)
    wants_usage = True
    if request.shape.usage_option and request.stream:
        wants_usage, asked = _ask_for_usage(request.fields)
        changed |= asked
    return Forwarded(
        body=orjson.dumps(request.data) if changed else request.raw,
        ignored=tuple(dict.fromkeys(ignored)),
        wants_usage=wants_usage,
        output_cap=output_cap if output_cap is not None else request.client_cap,
    )


def _drop_runtime_fields(request: ModelRequest) -> list[str]:
    removed = []
    for name in request.shape.runtime:
        key = request.fields.key(name)
        if key is not None:
            del request.data[key]
            removed.append(name)
    if request.shape.options is not None:
        options = request.fields.get(request.shape.options)
        if isinstance(options, dict):
            for key in list(options):
                option = field_name(key)
                if option in RUNNER_OPTIONS:
                    del options[key]
                    removed.append(f"{request.shape.options}.{option}")
    return removed


def _drop_web_tools(request: ModelRequest) -> list[str]:
    name = request.shape.tools
    tools = request.fields.get(name) if name is not None else None
    if name is None or not isinstance(tools, list):
        return []
    kept, removed = [], []
    for tool in tools:
        kind = entry.get("type") if (entry := fields_of(tool)) is not None else None
        if isinstance(kind, str) and kind.startswith(_WEB_TOOL_PREFIX):
            removed.append(f"{name}.{_header_safe(kind)}")
        else:
            kept.append(tool)
    if removed:
        request.data[request.fields.key_for_writing(name)] = kept
    return removed


def _header_safe(text: str) -> str:
    """A client-chosen name made fit for a response header."""
    return _UNSAFE_IN_HEADER.sub("", text)[:_SHOWN_TYPE_CHARS]


def _move_aliases(fields: Fields, cap: OutputCap) -> bool:
    """Move `max_completion_tokens` (which Ollama ignores) to `max_tokens`."""
    changed = False
    for alias in cap.aliases:
        key = fields.key(alias)
        if key is None:
            continue
        value = fields.object.pop(key)
        if fields.get(cap.field) is None and value is not None:
            fields.object[fields.key_for_writing(cap.field)] = value
        changed = True
    return changed


def _write_cap(fields: Fields, cap: OutputCap, output_cap: int) -> bool:
    """Set the cap into the field Ollama reads it from; True when that changed it."""
    key = fields.key_for_writing(cap.field)
    if cap.option is None:
        if fields.object.get(key) == output_cap:
            return False
        fields.object[key] = output_cap
        return True
    options = fields.object.get(key)
    if not isinstance(options, dict):
        options = fields.object[key] = {}
    if options.get(cap.option) == output_cap:
        return False
    options[cap.option] = output_cap
    return True


def _ask_for_usage(fields: Fields) -> tuple[bool, bool]:
    """(the client asked for the usage chunk, the body had to change to ask for it)."""
    key = fields.key_for_writing("stream_options")
    inner = fields_of(fields.object.get(key))
    if inner is None:
        fields.object[key] = {"include_usage": True}
    elif inner.get("include_usage") is True:
        return True, False
    else:
        inner.object[inner.key_for_writing("include_usage")] = True
    return False, True
