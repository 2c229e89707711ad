"""Token counts as Ollama reports them (docs/REFERENCE.md §4.7), from either surface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


def count(value: Any) -> int:
    """A token count as reported: a non-negative integer, anything else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def native_usage(message: Any) -> Usage | None:
    """Counts from a native final chunk / response (`done: true`) or an /api/embed answer."""
    if not isinstance(message, dict):
        return None
    if "prompt_eval_count" not in message and "eval_count" not in message:
        return None
    return Usage(count(message.get("prompt_eval_count")), count(message.get("eval_count")))


def openai_usage(message: Any) -> Usage | None:
    """Counts from the `usage` object of an OpenAI-layer response or chunk."""
    if not isinstance(message, dict):
        return None
    usage = message.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(count(usage.get("prompt_tokens")), count(usage.get("completion_tokens")))
