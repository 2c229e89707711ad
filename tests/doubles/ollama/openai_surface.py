"""What the double answers on the OpenAI-compatible routes (`/v1/*`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from . import wire
from .routes import (
    Call,
    Dialect,
    Generation,
    Reply,
    Static,
    body_error,
    checked_model,
    error,
    find_model,
    not_found,
    plan_answer,
)

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
    model = checked_model(call, Dialect.OPENAI, "chat")
    if isinstance(model, Static):
        return model
    plan = plan_answer(model, call, call.body.get("max_tokens"))
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
    model = checked_model(call, Dialect.OPENAI, "generate")
    if isinstance(model, Static):
        return model
    plan = plan_answer(model, call, call.body.get("max_tokens"))
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
    if bad := body_error(call, Dialect.OPENAI):
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
    model = checked_model(call, Dialect.OPENAI, None)
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
