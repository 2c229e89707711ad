"""Reading a model request as Ollama will read it (docs/REFERENCE.md §4.4, §4.6, §11)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from neuronetz_gateway.errors import GatewayError
from neuronetz_gateway.policy import routes
from neuronetz_gateway.policy.routes import Route
from neuronetz_gateway.proxy.reading import ModelRequest, read_request


def read(route: Route, body: dict[str, Any] | bytes) -> ModelRequest:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return read_request(raw, route, 64)


def refused(route: Route, body: dict[str, Any] | bytes) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        read(route, body)
    assert caught.value.status == 400
    return caught.value


def test_stream_defaults_per_surface_and_null_means_default() -> None:
    assert read(routes.CHAT, {"model": "m"}).stream is True
    assert read(routes.CHAT, {"model": "m", "stream": None}).stream is True
    assert read(routes.V1_CHAT, {"model": "m", "stream": None}).stream is False
    assert read(routes.EMBED, {"model": "m"}).stream is False


def test_fields_are_found_in_any_spelling_go_matches() -> None:
    request = read(routes.CHAT, {"Model": "m", "\u017ftream": False})
    assert (request.model, request.stream) == ("m", False)
    assert read(routes.V1_CHAT, {"model": "m", "MAX_TOKENS": 7}).client_cap == 7
    assert read(routes.GENERATE, {"model": "m", "Options": {"num_predict": 9}}).client_cap == 9
    # Inside `options` (a Go map) keys are exact: Ollama ignores NUM_PREDICT.
    assert read(routes.GENERATE, {"model": "m", "options": {"NUM_PREDICT": 9}}).client_cap is None


def test_show_takes_the_legacy_name_when_model_is_empty() -> None:
    assert read(routes.SHOW, {"name": "m"}).model == "m"
    assert read(routes.SHOW, {"model": "", "Name": "m"}).model == "m"
    assert read(routes.SHOW, {"model": "a", "name": "b"}).model == "a"


@pytest.mark.parametrize(
    ("route", "body", "cap"),
    [
        (routes.CHAT, {"options": {"num_predict": 5}}, 5),
        (routes.CHAT, {"options": {"num_predict": 7.9}}, 7),  # float64, truncated
        (routes.CHAT, {"options": {"num_predict": -1}}, None),
        (routes.CHAT, {"options": None}, None),
        (routes.V1_CHAT, {"max_tokens": 0}, None),
        (routes.V1_CHAT, {"max_completion_tokens": 12}, 12),
        (routes.V1_CHAT, {"max_tokens": 3, "max_completion_tokens": 12}, 3),
        (routes.V1_COMPLETIONS, {"max_tokens": 4}, 4),
        (routes.EMBED, {"options": {"num_predict": 5}}, None),
    ],
)
def test_client_caps(route: Route, body: dict[str, Any], cap: int | None) -> None:
    assert read(route, {"model": "m", **body}).client_cap == cap


@pytest.mark.parametrize(
    ("route", "body", "named"),
    [
        (routes.CHAT, [], "JSON object"),
        (routes.CHAT, {}, "model is required"),
        (routes.CHAT, {"model": ""}, "model is required"),
        (routes.CHAT, {"model": " "}, "model is required"),
        (routes.SHOW, {"model": " ", "name": "m"}, "model is required"),
        (routes.CHAT, {"model": 3}, "model must be a string"),
        (routes.CHAT, {"model": "m", "Stream": "yes"}, "stream must be a boolean"),
        (routes.CHAT, {"model": "m", "options": []}, "options must be an object"),
        (routes.CHAT, {"model": "m", "options": {"num_predict": "9"}}, "integer"),
        (routes.CHAT, {"model": "m", "options": {"num_predict": 2**60}}, "out of range"),
        (routes.V1_CHAT, {"model": "m", "max_tokens": 5.0}, "max_tokens must be an integer"),
        (routes.V1_CHAT, {"model": "m", "max_tokens": 2**63}, "max_tokens must be an integer"),
        (routes.V1_CHAT, {"model": "m", "stream_options": 1}, "stream_options must be"),
        (
            routes.V1_CHAT,
            {"model": "m", "stream_options": {"Include_Usage": "yes"}},
            "include_usage must be a boolean",
        ),
    ],
)
def test_fields_of_a_type_go_refuses_are_400(route: Route, body: Any, named: str) -> None:
    raw = orjson.dumps(body)
    assert named in refused(route, raw).message


def test_prompt_text_is_read_in_any_spelling() -> None:
    """`Prompt`, `Content`, `Input`: Ollama reads them, so the estimate counts them."""
    text = "twelve bytes"
    assert read(routes.GENERATE, {"model": "m", "Prompt": text}).prompt_text_bytes() == 12
    chat = {"model": "m", "messages": [{"role": "user", "Content": text}]}
    assert read(routes.CHAT, chat).prompt_text_bytes() == 12
    assert read(routes.EMBED, {"model": "m", "Input": [text, text]}).prompt_text_bytes() == 24


def test_prompt_text_counts_text_only() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "héllo", "images": ["A" * 10000]},
            {"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url"}]},
        ],
        "prompt": "not read on /v1/chat/completions",
    }
    assert read(routes.V1_CHAT, body).prompt_text_bytes() == len("héllo".encode()) + 3


def test_tools_count_as_prompt_text() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    plain = read(routes.CHAT, {"model": "m"}).prompt_text_bytes()
    assert read(routes.CHAT, {"model": "m", "Tools": tools}).prompt_text_bytes() > plain
