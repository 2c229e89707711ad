"""The Ollama servers a process forwards to, and which one a request goes to.

With one server (`OLLAMA_BASE_URL`) every request goes there. The pool keeps an
in-flight count per server so that several servers (`OLLAMA_BASE_URLS`) can be
chosen least-in-flight first among those that have the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit


@dataclass(eq=False)
class Upstream:
    """One Ollama server."""

    base_url: str
    index: int
    in_flight: int = 0
    models: frozenset[str] = field(default_factory=frozenset)

    def url(self, path: str) -> str:
        return self.base_url + path

    @cached_property
    def label(self) -> str:
        """`host:port`, naming the server in metrics and logs (never credentials or paths)."""
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class UpstreamPool:
    def __init__(self, base_urls: Sequence[str]) -> None:
        if not base_urls:
            raise ValueError("at least one upstream is required")
        self.upstreams = [Upstream(url, index) for index, url in enumerate(base_urls)]

    def pick(self, model: str | None = None, exclude: Iterable[Upstream] = ()) -> Upstream | None:
        """The least busy server (that has `model`, when servers' catalogs are known)."""
        excluded = set(map(id, exclude))
        candidates = [u for u in self.upstreams if id(u) not in excluded]
        if model is not None:
            having = [u for u in candidates if model in u.models]
            if having:
                candidates = having
        if not candidates:
            return None
        return min(candidates, key=lambda upstream: upstream.in_flight)
