"""Request rewriting: parse once, change only what must change (docs/REFERENCE.md §4.6, §4.7)."""

from __future__ import annotations

import pytest

from neuronetz_gateway.errors import GatewayError
from neuronetz_gateway.proxy import rewrite


def test_parse_model_body_defaults_stream_per_surface() -> None:
    assert rewrite.parse_model_body({"model": "m"}, streams_by_default=True).stream is True
    assert rewrite.parse_model_body({"model": "m"}, streams_by_default=False).stream is False


@pytest.mark.parametrize(
    "body", [[], "x", {"model": ""}, {"model": 3}, {"prompt": "x"}, {"model": "m", "stream": "yes"}]
)
def test_parse_model_body_rejects(body: object) -> None:
    with pytest.raises(GatewayError) as caught:
        rewrite.parse_model_body(body, streams_by_default=True)
    assert caught.value.status == 400


def test_text_bytes_counts_text_only() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "héllo", "images": ["A" * 10000]},
            {"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url"}]},
        ],
        "system": "xy",
    }
    assert rewrite.request_text_bytes(body) == len("héllo".encode()) + 3 + 2


def test_native_cap_applied_only_when_given() -> None:
    body: dict[str, object] = {"model": "m"}
    assert rewrite.apply_native(body, None) is False
    assert body == {"model": "m"}
    assert rewrite.apply_native(body, 50) is True
    assert body["options"] == {"num_predict": 50}


def test_openai_maps_max_completion_tokens_and_asks_for_usage() -> None:
    body: dict[str, object] = {"model": "m", "max_completion_tokens": 30, "stream": True}
    changed, wants_usage = rewrite.apply_openai(body, None, stream=True)
    assert changed
    assert not wants_usage
    assert body["max_tokens"] == 30
    assert "max_completion_tokens" not in body
    assert body["stream_options"] == {"include_usage": True}


def test_openai_client_usage_request_is_respected() -> None:
    body: dict[str, object] = {"model": "m", "stream_options": {"include_usage": True}}
    changed, wants_usage = rewrite.apply_openai(body, None, stream=True)
    assert not changed
    assert wants_usage


def test_client_caps() -> None:
    assert rewrite.client_output_cap_native({"options": {"num_predict": -1}}) is None
    assert rewrite.client_output_cap_native({"options": {"num_predict": 9}}) == 9
    assert rewrite.client_output_cap_openai({"max_completion_tokens": 7}) == 7
    assert rewrite.client_output_cap_openai({"max_tokens": True}) is None
