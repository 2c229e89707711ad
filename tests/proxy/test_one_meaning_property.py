"""Every body the gateway forwards means to Ollama what it meant to the gateway
(docs/REFERENCE.md §11), on generated bodies full of case variants, folded characters,
`\\u` escapes and repeated keys.

The gateway side is the code the pipeline runs (`read_request`, then `prepare` with a
budget's output cap or none, under every field policy); Ollama's side is the double's
Go-semantics reader (tests/doubles/ollama/gojson.py, itself held to Go by
tests/doubles/test_gojson_against_go.py) on the bytes the gateway would forward.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuronetz_gateway.config import Settings
from neuronetz_gateway.errors import GatewayError, Surface
from neuronetz_gateway.policy import routes
from neuronetz_gateway.policy.routes import Route, RouteKind
from neuronetz_gateway.proxy.gofields import Fields, fields_of
from neuronetz_gateway.proxy.reading import ModelRequest, read_request
from neuronetz_gateway.proxy.rewrite import Forwarded, prepare
from neuronetz_gateway.proxy.shapes import RUNNER_OPTIONS
from tests.doubles.ollama import gojson
from tests.support.bodies import Body, body

# Every route with a body the pipeline reads (docs/REFERENCE.md §4.2, §12), as served.
ROUTES = {
    route.name: route
    for route in routes.ALLOWED.values()
    if route.kind in (RouteKind.MODEL, RouteKind.SHOW)
}
SURFACES = {
    "native": ("/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show"),
    "openai": ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"),
    "anthropic": ("/v1/messages",),
    "responses": ("/v1/responses",),
}
POLICIES = [
    Settings(client_runtime_options=runtime, allow_web_tools=web)
    for runtime in ("drop", "pass")
    for web in (False, True)
]
MAX_DEPTH = 64
EXAMPLES = 2000  # per surface, in CI (the floor)


def _read(raw: bytes, route: Route) -> ModelRequest | GatewayError:
    try:
        return read_request(raw, route, MAX_DEPTH)
    except GatewayError as refusal:
        return refusal


# The gateway's own refusals of bodies Ollama would take: a blank model, a num_predict
# beyond 2**53 (where Go's float64 conversion gets inexact), a max_completion_tokens
# that is no integer (a field only the gateway reads).
_GATEWAY_ONLY = ("options.num_predict", "max_completion_tokens")


def _refusal_expected(path: str, generated: Body, refusal: GatewayError) -> bool:
    """Whether refusing the body is right: a repeated key, too deep, or Ollama refuses
    it too (a field of the wrong type), or one of the gateway's own refusals."""
    if generated.repeats or "nested too deeply" in refusal.message:
        return True
    if "not valid JSON" in refusal.message:
        return True  # orjson is stricter than Go (lone surrogates): never looser
    try:
        decision = gojson.decide(path, generated.raw)
    except gojson.GoRefusal:
        return True
    return not decision.model.strip() or refusal.param in _GATEWAY_ONLY


def _cap(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None


def _tool_types(tools: Any) -> tuple[str, ...]:
    entries = [fields_of(tool) for tool in tools] if isinstance(tools, list) else []
    return tuple(entry.get("type") or "" if entry else "" for entry in entries)


def _check_agreement(
    route: Route, request: ModelRequest, forwarded: Forwarded, policy: Settings
) -> None:
    """Ollama's reading of the forwarded bytes equals what the gateway acted on."""
    try:
        ollama = gojson.decide(route.name, forwarded.body)
    except gojson.GoRefusal:
        return  # Ollama answers 400: nothing runs, nothing to disagree about
    seen = Fields(request.data)  # the gateway's body after its changes
    assert ollama.model == request.model
    assert ollama.stream == request.stream
    if route.produces_output and route.kind is RouteKind.MODEL:
        assert _cap(ollama.cap) == forwarded.output_cap
    if route.surface is Surface.NATIVE:
        assert ollama.options == seen.get("options")
    if request.shape.tools is not None:
        assert ollama.tools == _tool_types(seen.get(request.shape.tools))
    if policy.client_runtime_options == "drop":
        assert not ollama.keep_alive
        assert not ollama.debug_render_only
        assert not RUNNER_OPTIONS & set(ollama.options or {})
    else:
        assert ollama.keep_alive == (seen.get("keep_alive") is not None)
    if not policy.allow_web_tools:
        assert not any(kind.startswith("web_") for kind in ollama.tools)
    if request.shape.usage_option and request.stream:
        assert ollama.include_usage


def _check_ignored_header(
    path: str, generated: Body, forwarded: Forwarded, policy: Settings
) -> None:
    """What Ollama would have read from the client's body and was removed is named."""
    try:
        asked = gojson.decide(path, generated.raw)
    except gojson.GoRefusal:
        return
    named = set(forwarded.ignored)
    if policy.client_runtime_options == "drop":
        assert asked.keep_alive <= ("keep_alive" in named)
        assert asked.debug_render_only <= ("_debug_render_only" in named)
        runner = {f"options.{key}" for key in asked.options or {} if key in RUNNER_OPTIONS}
        assert runner <= named
    if not policy.allow_web_tools:
        assert {f"tools.{t}" for t in asked.tools if t.startswith("web_")} <= named


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_forwarded_bodies_mean_to_ollama_what_they_meant_to_the_gateway(surface: str) -> None:
    paths = SURFACES[surface]
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        route = ROUTES[data.draw(st.sampled_from(paths))]
        generated: Body = data.draw(body(route.name))
        policy = data.draw(st.sampled_from(POLICIES))
        budget_cap = data.draw(st.one_of(st.none(), st.integers(1, 700)))
        request = _read(generated.raw, route)
        if isinstance(request, GatewayError):
            assert request.status == 400
            assert _refusal_expected(route.name, generated, request), request.message
            outcomes["refused"] += 1
            return
        assert not generated.repeats, "a body with a repeated key was accepted"
        output_cap = budget_cap if route.produces_output else None
        forwarded = prepare(request, output_cap, policy)
        _check_agreement(route, request, forwarded, policy)
        _check_ignored_header(route.name, generated, forwarded, policy)
        outcomes["forwarded"] += 1

    check()
    # The property held on the number of bodies CI promises, and most of them were
    # forwarded (a generator that made nearly every body a refusal would prove nothing).
    assert outcomes.total() >= EXAMPLES, outcomes
    assert outcomes["forwarded"] >= outcomes.total() // 5, outcomes


def test_every_forwarded_route_with_a_body_is_checked() -> None:
    """A route the gateway serves with a body it reads is in the property above."""
    checked = {path for paths in SURFACES.values() for path in paths}

    assert checked == set(ROUTES)
    assert ROUTES["/v1/messages"] is routes.V1_MESSAGES
    assert ROUTES["/v1/responses"] is routes.V1_RESPONSES
