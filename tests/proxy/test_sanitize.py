"""Upstream error text reaches clients without paths, hosts or addresses (REFERENCE.md §4.7)."""

from __future__ import annotations

import pytest

from neuronetz_gateway.proxy.sanitize import MAX_MESSAGE_CHARS, sanitize_message


@pytest.mark.parametrize(
    ("raw", "leak"),
    [
        ("open /usr/share/ollama/.ollama/models/blobs/sha256-abc: no such file", "/usr/share"),
        ("C:\\Users\\ollama\\models\\blob failed", "Users"),
        ("dial tcp 10.0.3.4:11434: connect: connection refused", "10.0.3.4"),
        ("post http://127.0.0.1:41234/completion: EOF", "127.0.0.1"),
        ("runner on gpu-3.cluster.internal died", "gpu-3"),
        ("listen [fe80::1]:11434 failed", "fe80"),
        ("connect to localhost:11434 refused", "localhost"),
        ("host ollama.prod.example.com:11434 down", "ollama.prod"),
    ],
)
def test_leaks_are_removed(raw: str, leak: str) -> None:
    assert leak not in sanitize_message(raw)


def test_wording_survives() -> None:
    message = 'model "llama3" not found, try pulling it first'
    assert sanitize_message(message) == message


def test_length_is_capped_and_control_characters_removed() -> None:
    cleaned = sanitize_message("x" * 1000 + "\n\x00")
    assert len(cleaned) == MAX_MESSAGE_CHARS
    assert "\n" not in sanitize_message("a\nb\x00c")


@pytest.mark.parametrize("value", [None, 42, "", "   ", {"nested": "x"}])
def test_non_text_gets_the_fallback(value: object) -> None:
    assert sanitize_message(value) == "upstream error"
