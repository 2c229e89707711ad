"""Sanitising upstream error text before a client sees it (docs/REFERENCE.md §4.7, §4.9).

Ollama's messages can carry file paths, host names and addresses of the machine it
runs on. What survives here is the wording, with those replaced by placeholders and
the length capped. Host names are recognised by their shape, since the gateway cannot
know every name of the network behind it:

- a URL, an IPv4 or IPv6 address (with or without port), a file path;
- a name ending in a suffix used for internal networks (`.internal`, `.svc`,
  `.cluster.local`, `.lan`, ...), a dotted name with a port;
- a name without dots where one is certain to be a host: followed by a port
  (`ollama-internal:11434`), after Go's `lookup` or `dial tcp`, or joined by a hyphen to
  an internal-network word (`ollama-internal`, `svc-gpu`).

Model names (`llama3.1:8b`, `"qwen:7"`) and Go identifiers (`api.ChatRequest`) stay:
they are what makes a message useful.
"""

from __future__ import annotations

import re

MAX_MESSAGE_CHARS = 200

_INTERNAL_SUFFIXES = (
    "local|localdomain|internal|intranet|private|lan|corp|home|svc|cluster|consul|docker|k8s"
)
_INTERNAL_WORDS = "internal|intranet|private|svc|cluster|corp|lan|localdomain"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"']+"), "[url]"),
    # IPv4 first: the IPv6 shape would take the "10:53:" of "10.0.0.10:53: no such host".
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "[address]"),
    (re.compile(r"\[?(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}\]?(?::\d+)?"), "[address]"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w .@+-]+){2,}[\\/]?"), "[path]"),
    # Go's resolver and dialer name the host they failed on.
    (
        re.compile(rf"\b(lookup|dial tcp|dial udp)\s+{_LABEL}(?:\.{_LABEL})*(?::\d+)?", re.I),
        r"\1 [host]",
    ),
    (
        re.compile(rf"\b(?:{_LABEL}\.)+(?:{_INTERNAL_SUFFIXES})\b(?::\d+)?", re.IGNORECASE),
        "[host]",
    ),
    (re.compile(r"\blocalhost(?::\d+)?\b", re.IGNORECASE), "[host]"),
    # A name with a port, dotted or not; a quoted `name:tag` is a model, not a host.
    (
        re.compile(rf"(?<![\"'\w.-])(?=[\w.-]*[A-Za-z]){_LABEL}(?:\.{_LABEL})*:\d{{2,5}}\b"),
        "[host]",
    ),
    (
        re.compile(
            rf"\b(?:{_LABEL}-)+(?:{_INTERNAL_WORDS})\b|\b(?:{_INTERNAL_WORDS})(?:-{_LABEL})+\b",
            re.IGNORECASE,
        ),
        "[host]",
    ),
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
