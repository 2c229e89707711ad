"""Route policy (docs/REFERENCE.md §4.2): deny by default, with fixed upstream paths.

`classify(method, raw_path)` decides from the raw request path, before anything else
runs: an allowlisted route (exact bytes, never a normalised spelling), one of the
hard-blocked Ollama endpoints (403 for every method and every spelling that could
reach them upstream), the gateway's own endpoints, a wrong method (405), or 404.

Nothing from the request path is ever forwarded: each route names its upstream path.
The normaliser below exists only to recognise blocked endpoints in disguise, so it is
deliberately more aggressive than any server's (it decodes repeatedly, drops
parameters, control characters and dot segments, and ignores case).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import unquote

from neuronetz_gateway.errors import Surface, surface_of_path


class RouteKind(enum.Enum):
    """What the pipeline does with a route."""

    MODEL = "model"  # runs a model: body with `model`, admitted, proxied, metered
    SHOW = "show"  # names a model but runs none: access-checked, proxied, counted in rpm
    COUNT_TOKENS = "count_tokens"  # names a model; answered from the gateway's estimate
    LISTING = "listing"  # built or filtered by the gateway per key
    PASSTHROUGH = "passthrough"  # proxied as is (version)
    LIVENESS = "liveness"  # `/`: answered by the gateway, without a key or an audit row


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # the path as audited, e.g. "/api/chat"
    surface: Surface
    kind: RouteKind
    methods: frozenset[str]
    upstream_path: str
    streams_by_default: bool = False
    produces_output: bool = True

    @property
    def takes_slot(self) -> bool:
        """Whether a request holds a slot of its Ollama server while it runs: the
        generating and embedding routes (docs/REFERENCE.md §10)."""
        return self.kind is RouteKind.MODEL


def _route(
    path: str,
    kind: RouteKind,
    methods: str = "POST",
    *,
    streams: bool = False,
    produces_output: bool = True,
) -> Route:
    return Route(
        name=path,
        surface=surface_of_path(path),
        kind=kind,
        methods=frozenset(methods.split()),
        upstream_path=path,
        streams_by_default=streams,
        produces_output=produces_output,
    )


CHAT = _route("/api/chat", RouteKind.MODEL, streams=True)
GENERATE = _route("/api/generate", RouteKind.MODEL, streams=True)
EMBED = _route("/api/embed", RouteKind.MODEL, produces_output=False)
EMBEDDINGS = _route("/api/embeddings", RouteKind.MODEL, produces_output=False)
SHOW = _route("/api/show", RouteKind.SHOW)
TAGS = _route("/api/tags", RouteKind.LISTING, "GET")
PS = _route("/api/ps", RouteKind.LISTING, "GET")
VERSION = _route("/api/version", RouteKind.PASSTHROUGH, "GET")
ROOT = _route("/", RouteKind.LIVENESS, "GET HEAD")
V1_CHAT = _route("/v1/chat/completions", RouteKind.MODEL)
V1_COMPLETIONS = _route("/v1/completions", RouteKind.MODEL)
V1_EMBEDDINGS = _route("/v1/embeddings", RouteKind.MODEL, produces_output=False)
V1_MODELS = _route("/v1/models", RouteKind.LISTING, "GET")
V1_RESPONSES = _route("/v1/responses", RouteKind.MODEL)
V1_MESSAGES = _route("/v1/messages", RouteKind.MODEL)
# Answered by the gateway; the upstream path is never used (Ollama has none).
V1_COUNT_TOKENS = _route("/v1/messages/count_tokens", RouteKind.COUNT_TOKENS)
# Answered from the catalog; the upstream path is never used.
V1_MODEL = _route("/v1/models/{model}", RouteKind.LISTING, "GET")

ALLOWED: dict[bytes, Route] = {
    route.name.encode(): route
    for route in (
        CHAT,
        GENERATE,
        EMBED,
        EMBEDDINGS,
        SHOW,
        TAGS,
        PS,
        VERSION,
        ROOT,
        V1_CHAT,
        V1_COMPLETIONS,
        V1_EMBEDDINGS,
        V1_MODELS,
        V1_RESPONSES,
        V1_MESSAGES,
        V1_COUNT_TOKENS,
    )
}


def _paths(surface: Surface) -> str:
    return ", ".join(
        route.name
        for route in ALLOWED.values()
        if route.surface is surface and route.kind is not RouteKind.LIVENESS
    )


# What a 404 tells the client the gateway serves (clients such as Claude Code show it).
SERVED = (
    f"the Ollama API ({_paths(Surface.NATIVE)}), the OpenAI API ({_paths(Surface.OPENAI)}) "
    f"and the Anthropic Messages API ({_paths(Surface.ANTHROPIC)})"
)

# The gateway's own endpoints, served by the framework behind the policy.
INTERNAL_PATHS = frozenset({b"/healthz", b"/readyz", b"/metrics"})
INTERNAL_METHODS = frozenset({"GET"})

BLOCKED_EXACT = frozenset({"/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"})
BLOCKED_TREES = ("/api/blobs",)

V1_MODEL_PREFIX = b"/v1/models/"
# What a model name may look like in /v1/models/{model}, after one percent-decoding.
_MODEL_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,254}")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_MAX_DECODE_ROUNDS = 8


class Verdict(enum.Enum):
    ROUTE = "route"
    LIVENESS = "liveness"  # GET/HEAD /: answered at once, no key, no audit row
    BLOCKED = "blocked"  # 403, before authentication
    NOT_FOUND = "not_found"  # 404
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    INTERNAL = "internal"  # /healthz, /readyz, /metrics


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    route: Route | None = None
    model: str | None = None  # the {model} of /v1/models/{model}
    allow: str | None = None  # the Allow header of a 405
    audit_route: str = ""  # what the audit row names: route name or canonical path


def _decode(raw_path: bytes) -> str:
    text = raw_path.decode("latin-1").split("?", 1)[0]
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = unquote(text, encoding="latin-1")
        if decoded == text:
            break
        text = decoded
    return text.replace("\\", "/")


def _resolve(text: str) -> str:
    segments: list[str] = []
    for segment in _CONTROL.sub("", text).lower().split("/"):
        segment = segment.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def canonical_path(raw_path: bytes) -> str:
    """The path as the most lenient server could read it: decoded, lower-case, resolved."""
    return _resolve(_decode(raw_path))


def _readings(raw_path: bytes) -> tuple[str, str]:
    """Two readings of the path: NULs dropped, and (as C code would) cut at the first NUL."""
    decoded = _decode(raw_path)
    return _resolve(decoded), _resolve(decoded.split("\x00", 1)[0])


def is_blocked(canonical: str) -> bool:
    """True for the mutating Ollama endpoints (docs/REFERENCE.md §4.2), whatever the spelling."""
    if canonical in BLOCKED_EXACT:
        return True
    return any(canonical == tree or canonical.startswith(tree + "/") for tree in BLOCKED_TREES)


def _allowed_methods(route: Route) -> str:
    return ", ".join(sorted(route.methods))


def _for_route(route: Route, method: str, model: str | None = None) -> Decision:
    if method in route.methods:
        verdict = Verdict.LIVENESS if route.kind is RouteKind.LIVENESS else Verdict.ROUTE
        return Decision(verdict, route, model=model, audit_route=route.name)
    return Decision(
        Verdict.METHOD_NOT_ALLOWED,
        route,
        allow=_allowed_methods(route),
        audit_route=route.name,
    )


def _model_from_segment(segment: bytes) -> str | None:
    try:
        name = unquote(segment.decode("ascii"), errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    return name if _MODEL_SEGMENT.fullmatch(name) and ".." not in name else None


def classify(method: str, raw_path: bytes) -> Decision:
    """Decide what to do with a request from its method and raw path alone."""
    route = ALLOWED.get(raw_path)
    if route is not None:
        return _for_route(route, method)
    canonical, truncated = _readings(raw_path)
    audit_route = canonical[:64]
    if is_blocked(canonical) or is_blocked(truncated):
        return Decision(Verdict.BLOCKED, audit_route=audit_route)
    if raw_path in INTERNAL_PATHS:
        if method in INTERNAL_METHODS:
            return Decision(Verdict.INTERNAL, audit_route=audit_route)
        return Decision(Verdict.METHOD_NOT_ALLOWED, allow="GET", audit_route=audit_route)
    if raw_path.startswith(V1_MODEL_PREFIX):
        model = _model_from_segment(raw_path[len(V1_MODEL_PREFIX) :])
        if model is not None:
            return _for_route(V1_MODEL, method, model)
    return Decision(Verdict.NOT_FOUND, audit_route=audit_route)
