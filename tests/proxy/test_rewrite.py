"""What the gateway changes before forwarding (docs/REFERENCE.md §4.6, §4.7, §11): only
what must change, in the key Ollama reads, re-encoded only when something changed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from neuronetz_gateway.config import Settings
from neuronetz_gateway.policy import routes
from neuronetz_gateway.policy.routes import Route
from neuronetz_gateway.proxy.reading import read_request
from neuronetz_gateway.proxy.rewrite import Forwarded, prepare
from neuronetz_gateway.proxy.shapes import RUNNER_OPTIONS
from tests.support.client_requests import codex_request

DROP = Settings(client_runtime_options="drop", allow_web_tools=False)
PASS = Settings(client_runtime_options="pass", allow_web_tools=True)


def forward(
    route: Route,
    body: dict[str, Any] | bytes,
    cap: int | None = None,
    settings: Settings = DROP,
) -> tuple[Forwarded, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    forwarded = prepare(read_request(raw, route, 64), cap, settings)
    return forwarded, orjson.loads(forwarded.body)


def test_an_unchanged_body_is_forwarded_as_sent() -> None:
    raw = b'{"model": "m",  "messages": [], "options": {"num_predict": 5}}'
    forwarded, _ = forward(routes.CHAT, raw, cap=5)
    assert forwarded.body is raw
    assert forwarded.headers == []


def test_the_cap_goes_into_the_key_the_client_used() -> None:
    _, sent = forward(routes.CHAT, {"model": "m", "Options": {"num_predict": 900}}, cap=50)
    assert sent == {"model": "m", "Options": {"num_predict": 50}}
    _, sent = forward(routes.CHAT, {"model": "m", "Options": None}, cap=50)
    assert sent == {"model": "m", "Options": {"num_predict": 50}}
    _, sent = forward(routes.V1_CHAT, {"model": "m", "MAX_TOKENS": 900}, cap=50)
    assert sent == {"model": "m", "MAX_TOKENS": 50}
    _, sent = forward(routes.CHAT, {"model": "m"}, cap=50)
    assert sent == {"model": "m", "options": {"num_predict": 50}}


def test_the_effective_cap_is_the_budgets_or_the_clients() -> None:
    assert forward(routes.V1_CHAT, {"model": "m", "max_tokens": 9})[0].output_cap == 9
    assert forward(routes.V1_CHAT, {"model": "m", "max_tokens": 9}, cap=4)[0].output_cap == 4
    assert forward(routes.V1_CHAT, {"model": "m"})[0].output_cap is None


def test_max_completion_tokens_becomes_max_tokens() -> None:
    forwarded, sent = forward(routes.V1_CHAT, {"model": "m", "Max_Completion_Tokens": 30})
    assert sent == {"model": "m", "max_tokens": 30}
    assert forwarded.output_cap == 30
    _, sent = forward(routes.V1_CHAT, {"model": "m", "max_completion_tokens": 30, "Max_Tokens": 5})
    assert sent == {"model": "m", "Max_Tokens": 5}


def test_openai_streams_ask_for_usage_in_the_clients_key() -> None:
    body = {"model": "m", "stream": True, "Stream_Options": {"Include_Usage": False}}
    forwarded, sent = forward(routes.V1_CHAT, body)
    assert sent["Stream_Options"] == {"Include_Usage": True}
    assert not forwarded.wants_usage
    forwarded, sent = forward(routes.V1_COMPLETIONS, {"model": "m", "stream": True})
    assert sent["stream_options"] == {"include_usage": True}
    body = {"model": "m", "stream": True, "stream_options": {"include_usage": True}}
    forwarded, _ = forward(routes.V1_CHAT, body)
    assert forwarded.wants_usage


@pytest.mark.parametrize("spelling", ["keep_alive", "Keep_Alive", "\u212aEEP_ALIVE"])
def test_keep_alive_is_removed_in_any_spelling(spelling: str) -> None:
    forwarded, sent = forward(routes.GENERATE, {"model": "m", spelling: 0})
    assert sent == {"model": "m"}
    assert forwarded.headers == [(b"x-neuronetz-ignored-fields", b"keep_alive")]


def test_runner_options_and_debug_rendering_are_removed_and_named() -> None:
    # Every runner option, num_ctx spelled NUM_CTX (which Ollama ignores; dropped anyway).
    options: dict[str, float] = dict.fromkeys(sorted(RUNNER_OPTIONS - {"num_ctx"}), 1)
    options |= {"NUM_CTX": 1, "temperature": 0.5}
    body = {"model": "m", "options": options, "keep_alive": "5m", "_debug_render_only": True}
    forwarded, sent = forward(routes.CHAT, body)
    assert sent == {"model": "m", "options": {"temperature": 0.5}}
    named = forwarded.headers[0][1].decode().split(", ")
    expected = {f"options.{name}" for name in RUNNER_OPTIONS}
    assert set(named) == {"keep_alive", "_debug_render_only", *expected}
    assert len(named) == len(set(named))


def test_runtime_fields_pass_when_configured() -> None:
    body = {"model": "m", "keep_alive": -1, "options": {"num_ctx": 131072, "num_gpu": 0}}
    raw = orjson.dumps(body)
    forwarded, _ = forward(routes.GENERATE, raw, settings=PASS)
    assert forwarded.body is raw
    assert forwarded.headers == []


def test_web_tools_are_removed_and_named_by_type() -> None:
    tools = [
        {"type": "function", "function": {"name": "f"}},
        {"Type": "web_search"},
        {"type": "web_fetch\r\nx-evil: 1"},
    ]
    forwarded, sent = forward(routes.CHAT, {"model": "m", "tools": tools})
    assert sent["tools"] == [tools[0]]
    assert forwarded.headers == [
        (b"x-neuronetz-ignored-fields", b"tools.web_search, tools.web_fetchx-evil:1")
    ]
    _, sent = forward(routes.CHAT, {"model": "m", "tools": tools}, settings=PASS)
    assert sent["tools"] == tools


def test_codex_keeps_every_tool_but_web_search() -> None:
    raw = orjson.dumps(codex_request("llama3.1:8b", "say hi", "unused").body)
    route = Route("/v1/responses", routes.V1_CHAT.surface, routes.V1_CHAT.kind, frozenset(), "")
    forwarded, sent = forward(route, raw)
    original = orjson.loads(raw)
    assert [t["type"] for t in sent["tools"]] == [
        t["type"] for t in original["tools"] if t["type"] != "web_search"
    ]
    assert forwarded.ignored == ("tools.web_search",)
    assert {k: v for k, v in sent.items() if k != "tools"} == {
        k: v for k, v in original.items() if k != "tools"
    }
