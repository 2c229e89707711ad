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
        ("model failed on ollama-internal.svc", "ollama-internal"),
        ("upstream ollama-internal refused the request", "ollama-internal"),
        ("dial tcp: lookup ollama-internal on 10.0.0.10:53: no such host", "ollama-internal"),
        ("dial tcp: lookup gpubox on 10.0.0.10:53: no such host", "gpubox"),
        ("dial tcp gpubox:11434: connect: connection refused", "gpubox"),
        ("gpubox:11434 unreachable", "gpubox"),
        ("runner ollama-0.ollama.default.svc.cluster.local died", "ollama-0"),
        ("svc-llm-gpu is draining", "svc-llm"),
    ],
)
def test_leaks_are_removed(raw: str, leak: str) -> None:
    assert leak not in sanitize_message(raw)


@pytest.mark.parametrize(
    "message",
    [
        'model "llama3" not found, try pulling it first',
        'model "llama3.1:8b" not found, try pulling it first',
        'model "qwen:7" not found',
        "json: cannot unmarshal string into Go struct field ChatRequest.messages of type "
        "api.Message",
        "model requires more system memory (5.5 GiB) than is available (3.2 GiB)",
        "invalid option: num_ctx:4096 is too large",
        "built-in tools need a non-zero context",
    ],
)
def test_wording_survives(message: str) -> None:
    assert sanitize_message(message) == message


def test_length_is_capped_and_control_characters_removed() -> None:
    cleaned = sanitize_message("x" * 1000 + "\n\x00")
    assert len(cleaned) == MAX_MESSAGE_CHARS
    assert "\n" not in sanitize_message("a\nb\x00c")


@pytest.mark.parametrize("value", [None, 42, "", "   ", {"nested": "x"}])
def test_non_text_gets_the_fallback(value: object) -> None:
    assert sanitize_message(value) == "upstream error"
