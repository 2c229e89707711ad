"""What the double answers on each route, before behaviours shape the delivery.

A handler turns a parsed request into a `Static` reply (sent as is) or a
`Generation` (a model answer the server streams or sends whole, applying the
behaviour knobs). Validation order and messages mirror Ollama's handlers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from . import wire
from .behaviour import Behaviour

VERSION = "0.12.3"


class Dialect(Enum):
    """Which error shape a route speaks."""

    NATIVE = "native"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


@dataclass(frozen=True)
class Static:
    """A complete response."""

    status: int
    body: bytes = b""
    content_type: str | None = None


@dataclass(frozen=True)
class Generation:
    """A model answer: token frames plus closing frames, or the whole body."""

    dialect: Dialect
    stream: bool
    content_type: str
    whole: bytes
    frames: tuple[bytes, ...]
    tail: tuple[bytes, ...]

    def error_frame(self, message: str) -> bytes:
        """The in-band error that ends a broken stream."""
        if self.dialect is Dialect.NATIVE:
            return wire.ndjson_line(wire.native_error(message))
        return wire.sse_frame(wire.openai_error(500, message))


Reply = Static | Generation


@dataclass(frozen=True)
class Call:
    """Everything a handler may look at."""

    body: Any
    raw: bytes
    path_model: str | None
    behaviour: Behaviour
    models: Sequence[str]
    loaded: Sequence[str]
    next_id: Callable[[], int]


@dataclass(frozen=True)
class Route:
    """A handler, the error dialect it speaks and whether it names/runs a model."""

    handler: Callable[[Call], Reply]
    dialect: Dialect
    names_model: bool = False
    runs_model: bool = False

    def model_of(self, call_body: Any, path_model: str | None) -> str | None:
        """The model a request names, if this route takes one."""
        if path_model is not None:
            return path_model
        if not self.names_model or not isinstance(call_body, Mapping):
            return None
        model = call_body.get("model") or call_body.get("name")
        return model if isinstance(model, str) and model else None


def error(dialect: Dialect, status: int, message: str) -> Static:
    """An error response in the route's dialect."""
    if dialect is Dialect.NATIVE:
        return Static(status, wire.dumps(wire.native_error(message)), wire.NATIVE_JSON)
    if dialect is Dialect.ANTHROPIC:
        return Static(status, wire.dumps(wire.anthropic_error(status, message)), wire.OPENAI_JSON)
    return Static(status, wire.dumps(wire.openai_error(status, message)), wire.OPENAI_JSON)


def host_allowed(host: str | None) -> bool:
    """Ollama's check for a server bound to loopback: only local names may ask.

    Accepts `localhost`, `*.localhost` and loopback IPs, with or without a port
    (and an absent Host, as Go does). Real Ollama also lets private IPs and
    `.local`/`.internal` names through; the double is stricter on purpose, so a
    client's Host leaking upstream is caught.
    """
    if not host:
        return True
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        name = host.partition(":")[0]
    else:
        name = host
    name = name.lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def find_model(models: Sequence[str], name: str) -> str | None:
    """The pulled model `name` refers to (tag `:latest` implied), or None."""
    wanted = wire.normalise(name)
    return next((wire.normalise(m) for m in models if wire.normalise(m) == wanted), None)


def not_found(name: str) -> str:
    """Ollama's message for a model that is not pulled."""
    return f'model "{name}" not found, try pulling it first'


def body_error(call: Call, dialect: Dialect) -> Static | None:
    """The 400 for a body that is missing or not a JSON object, else None."""
    if isinstance(call.body, Mapping):
        return None
    message = "missing request body" if not call.raw.strip() else "invalid JSON request body"
    return error(dialect, 400, message)


def checked_model(call: Call, dialect: Dialect, capability: str | None) -> Static | str:
    """The requested model name, or the error Ollama gives for the request."""
    if bad := body_error(call, dialect):
        return bad
    model = call.body.get("model") or call.body.get("name")
    if not isinstance(model, str) or not model:
        return error(dialect, 400, "model is required")
    if find_model(call.models, model) is None:
        return error(dialect, 404, not_found(model))
    if capability is not None and wire.is_embedding_model(model):
        return error(dialect, 400, f'"{model}" does not support {capability}')
    return model


def _cap(value: Any) -> int | None:
    # Ollama treats num_predict <= 0 (and -1, its default) as "no limit"; options hold
    # Go float64s.
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return int(value)
    return None


@dataclass(frozen=True)
class Plan:
    """What the model "generates" for one request."""

    model: str
    prompt_tokens: int
    tokens: list[str]
    done_reason: str

    @property
    def counts(self) -> tuple[int, int]:
        return self.prompt_tokens, len(self.tokens)

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def plan_answer(model: str, call: Call, cap: Any) -> Plan:
    """Generate `completion_tokens` tokens, cut to `cap`; reaching the cap means `length`."""
    natural = max(0, call.behaviour.completion_tokens)
    limit = _cap(cap)
    count = natural if limit is None else min(natural, limit)
    reason = "length" if limit is not None and limit <= natural else "stop"
    tokens = wire.completion_tokens(count)
    return Plan(model, wire.count_prompt_tokens(call.body), tokens, reason)


# -- native surface ---------------------------------------------------------


def _native_generation(call: Call, kind: str) -> Reply:
    model = checked_model(call, Dialect.NATIVE, kind)
    if isinstance(model, Static):
        return model
    body = call.body
    empty = not body.get("messages") if kind == "chat" else not body.get("prompt")
    if empty:
        return Static(200, wire.dumps(wire.native_load(kind, model)), wire.NATIVE_JSON)
    options = body.get("options")
    plan = plan_answer(
        model, call, options.get("num_predict") if isinstance(options, Mapping) else None
    )
    stream = body.get("stream") is not False  # stream defaults to true natively
    created = wire.now_rfc3339()
    frames = tuple(
        wire.ndjson_line(wire.native_chunk(kind, model, created, t)) for t in plan.tokens
    )
    final = wire.native_final(kind, model, created, "", plan.done_reason, plan.counts)
    whole = wire.native_final(kind, model, created, plan.text, plan.done_reason, plan.counts)
    return Generation(
        dialect=Dialect.NATIVE,
        stream=stream,
        content_type=wire.NDJSON if stream else wire.NATIVE_JSON,
        whole=wire.dumps(whole),
        frames=frames,
        tail=(wire.ndjson_line(final),),
    )


def generate(call: Call) -> Reply:
    """POST /api/generate."""
    return _native_generation(call, "generate")


def chat(call: Call) -> Reply:
    """POST /api/chat."""
    return _native_generation(call, "chat")


def embed(call: Call) -> Reply:
    """POST /api/embed: `input` is a string or a list of strings."""
    model = checked_model(call, Dialect.NATIVE, None)
    if isinstance(model, Static):
        return model
    raw_input = call.body.get("input")
    if isinstance(raw_input, str):
        inputs = [raw_input] if raw_input else []
    elif isinstance(raw_input, list) and all(isinstance(i, str) for i in raw_input):
        inputs = raw_input
    else:
        return error(Dialect.NATIVE, 400, "invalid input type")
    prompt_tokens = wire.count_prompt_tokens(call.body)
    timing = wire.metrics(prompt_tokens, 0)
    answer = {
        "model": model,
        "embeddings": [wire.embedding_for(i) for i in inputs],
        "total_duration": timing["total_duration"],
        "load_duration": timing["load_duration"],
        "prompt_eval_count": prompt_tokens,
    }
    return Static(200, wire.dumps(answer), wire.NATIVE_JSON)


def embeddings(call: Call) -> Reply:
    """POST /api/embeddings (legacy): one `prompt`, one vector; empty prompt, empty vector."""
    model = checked_model(call, Dialect.NATIVE, None)
    if isinstance(model, Static):
        return model
    prompt = call.body.get("prompt")
    vector = wire.embedding_for(prompt) if isinstance(prompt, str) and prompt else []
    return Static(200, wire.dumps({"embedding": vector}), wire.NATIVE_JSON)


def show(call: Call) -> Reply:
    """POST /api/show with `model` (or the legacy `name`)."""
    model = checked_model(call, Dialect.NATIVE, None)
    if isinstance(model, Static):
        return model
    return Static(200, wire.dumps(wire.show(model)), wire.NATIVE_JSON)


def tags(call: Call) -> Reply:
    """GET /api/tags."""
    models = [wire.tags_entry(m) for m in call.models]
    return Static(200, wire.dumps({"models": models}), wire.NATIVE_JSON)


def ps(call: Call) -> Reply:
    """GET /api/ps: the models that answered a generation or embedding so far."""
    models = [wire.ps_entry(m) for m in call.loaded]
    return Static(200, wire.dumps({"models": models}), wire.NATIVE_JSON)


def version(call: Call) -> Reply:
    """GET /api/version."""
    return Static(200, wire.dumps({"version": VERSION}), wire.NATIVE_JSON)


def root(call: Call) -> Reply:
    """GET and HEAD /."""
    return Static(200, b"Ollama is running", "text/plain; charset=utf-8")
