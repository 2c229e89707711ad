"""Sanitising upstream error text before a client sees it (docs/REFERENCE.md §4.7, §4.9).

Ollama's messages can carry file paths, host names and addresses of the machine it
runs on. What survives here is the wording, with those replaced by placeholders and
the length capped.
"""

from __future__ import annotations

import re

MAX_MESSAGE_CHARS = 200

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"']+"), "[url]"),
    (re.compile(r"\[?(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}\]?(?::\d+)?"), "[address]"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "[address]"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w .@+-]+){2,}[\\/]?"), "[path]"),
    (re.compile(r"\b(?:[a-zA-Z0-9-]+\.)+(?:local|internal|lan|corp|home|localdomain)\b"), "[host]"),
    (re.compile(r"\blocalhost(?::\d+)?\b", re.IGNORECASE), "[host]"),
    (re.compile(r"\b(?:[a-z0-9-]+\.){1,}[a-z]{2,}:\d+\b", re.IGNORECASE), "[host]"),
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def sanitize_message(text: object, fallback: str = "upstream error") -> str:
    """`text` without paths, URLs, host names or addresses, at most 200 characters."""
    if not isinstance(text, str) or not text.strip():
        return fallback
    cleaned = _CONTROL.sub(" ", text)
    for pattern, replacement in _PATTERNS:
        cleaned = pattern.sub(replacement, cleaned)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > MAX_MESSAGE_CHARS:
        cleaned = cleaned[: MAX_MESSAGE_CHARS - 1] + "…"
    return cleaned or fallback
