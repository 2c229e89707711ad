"""`merge_ps`: several servers' `/api/ps` answers as one, filtered per key."""

from __future__ import annotations

import orjson
import pytest

from neuronetz_gateway.api.listings import merge_ps


def ps(*names: str, until: str = "2026-01-01T00:00:00Z") -> bytes:
    return orjson.dumps({"models": [{"name": n, "model": n, "expires_at": until} for n in names]})


def test_models_of_every_server_are_listed_once_and_filtered() -> None:
    merged = merge_ps(
        [ps("a:1b", "shared:1b", until="first"), ps("shared:1b", "b:1b"), ps("secret:1b")],
        visible={"a:1b", "b:1b", "shared:1b"},
    )
    models = orjson.loads(merged)["models"]
    assert [m["name"] for m in models] == ["a:1b", "shared:1b", "b:1b"]
    assert models[1]["expires_at"] == "first"  # the first server's entry wins


def test_unreadable_answers_are_left_out() -> None:
    merged = merge_ps([b"<html>", b'"text"', ps("a:1b"), b'{"models": null}'], {"a:1b"})
    assert orjson.loads(merged) == {
        "models": [{"name": "a:1b", "model": "a:1b", "expires_at": "2026-01-01T00:00:00Z"}]
    }


def test_no_readable_answer_is_an_error() -> None:
    with pytest.raises(ValueError, match="no /api/ps answer"):
        merge_ps([b"<html>", b"[]"], {"a:1b"})
