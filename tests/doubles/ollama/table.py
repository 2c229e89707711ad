"""The double's routing table: which handler answers which method and path."""

from __future__ import annotations

from .anthropic_surface import messages
from .openai_surface import (
    chat_completions,
    completions,
    openai_embeddings,
    openai_model,
    openai_models,
)
from .responses_surface import responses
from .routes import Dialect, Route, chat, embed, embeddings, generate, ps, root, show, tags, version

_NATIVE, _OPENAI, _ANTHROPIC = Dialect.NATIVE, Dialect.OPENAI, Dialect.ANTHROPIC
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
    ("POST", "/v1/responses"): Route(responses, _OPENAI, **_MODEL_RUN),
    ("POST", "/v1/messages"): Route(messages, _ANTHROPIC, **_MODEL_RUN),
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
