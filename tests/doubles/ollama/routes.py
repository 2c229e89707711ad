"""What the double answers on each route, before behaviours shape the delivery.

A handler turns a parsed request into a `Static` reply (sent as is) or a
`Generation` (a model answer the server streams or sends whole, applying the
behaviour knobs). Validation order and messages mirror Ollama's handlers.
"""

from __future__ import annotations

import ipaddress
import time
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


def _body_error(call: Call, dialect: Dialect) -> Static | None:
    """The 400 for a body that is missing or not a JSON object, else None."""
    if isinstance(call.body, Mapping):
        return None
    message = "missing request body" if not call.raw.strip() else "invalid JSON request body"
    return error(dialect, 400, message)


def _checked_model(call: Call, dialect: Dialect, capability: str | None) -> Static | str:
    """The requested model name, or the error Ollama gives for the request."""
    if bad := _body_error(call, dialect):
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
    # Ollama treats num_predict <= 0 (and -1, its default) as "no limit".
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


@dataclass(frozen=True)
class _Plan:
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


def _plan(model: str, call: Call, cap: Any) -> _Plan:
    """Generate `completion_tokens` tokens, cut to `cap`; reaching the cap means `length`."""
    natural = max(0, call.behaviour.completion_tokens)
    limit = _cap(cap)
    count = natural if limit is None else min(natural, limit)
    reason = "length" if limit is not None and limit <= natural else "stop"
    tokens = wire.completion_tokens(count)
    return _Plan(model, wire.count_prompt_tokens(call.body), tokens, reason)


# -- native surface ---------------------------------------------------------


def _native_generation(call: Call, kind: str) -> Reply:
    model = _checked_model(call, Dialect.NATIVE, kind)
    if isinstance(model, Static):
        return model
    body = call.body
    empty = not body.get("messages") if kind == "chat" else not body.get("prompt")
    if empty:
        return Static(200, wire.dumps(wire.native_load(kind, model)), wire.NATIVE_JSON)
    options = body.get("options")
    plan = _plan(model, call, options.get("num_predict") if isinstance(options, Mapping) else None)
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
    model = _checked_model(call, Dialect.NATIVE, None)
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
    model = _checked_model(call, Dialect.NATIVE, None)
    if isinstance(model, Static):
        return model
    prompt = call.body.get("prompt")
    vector = wire.embedding_for(prompt) if isinstance(prompt, str) and prompt else []
    return Static(200, wire.dumps({"embedding": vector}), wire.NATIVE_JSON)


def show(call: Call) -> Reply:
    """POST /api/show with `model` (or the legacy `name`)."""
    model = _checked_model(call, Dialect.NATIVE, None)
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


# -- OpenAI surface ---------------------------------------------------------


def _openai_stream_options(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream") is True  # stream defaults to false on /v1
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    return stream, include_usage


def chat_completions(call: Call) -> Reply:
    """POST /v1/chat/completions."""
    if isinstance(call.body, Mapping) and not call.body.get("messages"):
        return error(Dialect.OPENAI, 400, "[] is too short - 'messages'")
    model = _checked_model(call, Dialect.OPENAI, "chat")
    if isinstance(model, Static):
        return model
    plan = _plan(model, call, call.body.get("max_tokens"))
    stream, include_usage = _openai_stream_options(call.body)
    id_, created = f"chatcmpl-{call.next_id()}", int(time.time())
    frames = tuple(
        wire.sse_frame(wire.chat_chunk(id_, created, model, t, None)) for t in plan.tokens
    )
    tail = [wire.sse_frame(wire.chat_chunk(id_, created, model, "", plan.done_reason))]
    if include_usage:
        tail.append(wire.sse_frame(wire.chat_usage_chunk(id_, created, model, plan.counts)))
    tail.append(wire.SSE_DONE)
    whole = wire.chat_completion(id_, created, model, plan.text, plan.done_reason, plan.counts)
    return Generation(
        dialect=Dialect.OPENAI,
        stream=stream,
        content_type=wire.SSE if stream else wire.OPENAI_JSON,
        whole=wire.dumps(whole),
        frames=frames,
        tail=tuple(tail),
    )


def completions(call: Call) -> Reply:
    """POST /v1/completions; with include_usage Ollama puts zero usage on every chunk."""
    if isinstance(call.body, Mapping) and not isinstance(call.body.get("prompt", ""), str):
        return error(Dialect.OPENAI, 400, "invalid type for 'prompt': expected a string")
    model = _checked_model(call, Dialect.OPENAI, "generate")
    if isinstance(model, Static):
        return model
    plan = _plan(model, call, call.body.get("max_tokens"))
    stream, include_usage = _openai_stream_options(call.body)
    id_, created = f"cmpl-{call.next_id()}", int(time.time())
    zero = wire.usage(0, 0) if include_usage else None

    def chunk(text: str, finish: str | None) -> bytes:
        return wire.sse_frame(wire.text_completion(id_, created, model, text, finish, zero))

    tail = [chunk("", plan.done_reason)]
    if include_usage:
        last = wire.text_completion(id_, created, model, "", None, wire.usage(*plan.counts))
        last["choices"] = []
        tail.append(wire.sse_frame(last))
    tail.append(wire.SSE_DONE)
    whole = wire.text_completion(
        id_, created, model, plan.text, plan.done_reason, wire.usage(*plan.counts)
    )
    return Generation(
        dialect=Dialect.OPENAI,
        stream=stream,
        content_type=wire.SSE if stream else wire.OPENAI_JSON,
        whole=wire.dumps(whole),
        frames=tuple(chunk(t, None) for t in plan.tokens),
        tail=tuple(tail),
    )


def openai_embeddings(call: Call) -> Reply:
    """POST /v1/embeddings; `encoding_format` is `float` (default) or `base64`."""
    if bad := _body_error(call, Dialect.OPENAI):
        return bad
    body = call.body
    encoding = body.get("encoding_format") or "float"
    if not isinstance(encoding, str) or encoding.lower() not in ("float", "base64"):
        message = (
            f"Invalid value for 'encoding_format' = {encoding}. "
            "Supported values: ['float', 'base64']."
        )
        return error(Dialect.OPENAI, 400, message)
    if body.get("input") is None or body.get("input") == []:
        return error(Dialect.OPENAI, 400, "invalid input")
    model = _checked_model(call, Dialect.OPENAI, None)
    if isinstance(model, Static):
        return model
    inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
    if not all(isinstance(i, str) for i in inputs):
        return error(Dialect.OPENAI, 400, "invalid input type")
    as_base64 = encoding.lower() == "base64"
    data = []
    for index, text in enumerate(inputs):
        vector = wire.embedding_for(text)
        encoded = wire.embedding_base64(vector) if as_base64 else vector
        data.append({"object": "embedding", "embedding": encoded, "index": index})
    prompt_tokens = wire.count_prompt_tokens(body)
    answer = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    return Static(200, wire.dumps(answer), wire.OPENAI_JSON)


def openai_models(call: Call) -> Reply:
    """GET /v1/models; `data` is null when no model is pulled."""
    return Static(200, wire.dumps(wire.model_list(call.models)), wire.OPENAI_JSON)


def openai_model(call: Call) -> Reply:
    """GET /v1/models/{model}."""
    name = call.path_model or ""
    if find_model(call.models, name) is None:
        return error(Dialect.OPENAI, 404, not_found(name))
    return Static(200, wire.dumps(wire.model_object(name)), wire.OPENAI_JSON)


_NATIVE, _OPENAI = Dialect.NATIVE, Dialect.OPENAI
_MODEL_RUN = {"names_model": True, "runs_model": True}

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/"): Route(root, _NATIVE),
    ("HEAD", "/"): Route(root, _NATIVE),
    ("GET", "/api/version"): Route(version, _NATIVE),
    ("HEAD", "/api/version"): Route(version, _NATIVE),
    ("GET", "/api/tags"): Route(tags, _NATIVE),
    ("HEAD", "/api/tags"): Route(tags, _NATIVE),
    ("GET", "/api/ps"): Route(ps, _NATIVE),
    ("POST", "/api/generate"): Route(generate, _NATIVE, **_MODEL_RUN),
    ("POST", "/api/chat"): Route(chat, _NATIVE, **_MODEL_RUN),
    ("POST", "/api/embed"): Route(embed, _NATIVE, **_MODEL_RUN),
    ("POST", "/api/embeddings"): Route(embeddings, _NATIVE, **_MODEL_RUN),
    ("POST", "/api/show"): Route(show, _NATIVE, names_model=True),
    ("POST", "/v1/chat/completions"): Route(chat_completions, _OPENAI, **_MODEL_RUN),
    ("POST", "/v1/completions"): Route(completions, _OPENAI, **_MODEL_RUN),
    ("POST", "/v1/embeddings"): Route(openai_embeddings, _OPENAI, **_MODEL_RUN),
    ("GET", "/v1/models"): Route(openai_models, _OPENAI),
}
_MODEL_ROUTE = Route(openai_model, _OPENAI, names_model=True)
_MODEL_PREFIX = "/v1/models/"


def route_for(method: str, path: str) -> tuple[Route, str | None] | None:
    """The route for a request and the model in its path, or None (a 404)."""
    if route := ROUTES.get((method, path)):
        return route, None
    tail = path.removeprefix(_MODEL_PREFIX)
    if method == "GET" and tail != path and tail and "/" not in tail:
        return _MODEL_ROUTE, tail
    return None
