"""The scheduler's Redis keys and the servers its scripts know (docs/SCHEDULING.md).

Every key carries the hash tag `{nzq}`: the queue is global across tenants (that is
what makes the order fair), so its keys share one Redis Cluster slot. Keys are built
here, once, and passed in `KEYS`; the scripts never build a key name. A server is named
by the first 16 hex digits of the SHA-256 of its base URL: the same on every replica
whatever the order of `OLLAMA_BASE_URLS`, and no credentials of a URL in a key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from neuronetz_gateway.proxy.upstreams import Upstream

NAMESPACE = "nz:q:{nzq}:"
GLOBAL_KEYS = ("tags", "vt", "waiters", "replicas", "arrivals")
PER_SERVER_KEYS = ("held", "wait", "ready")


def server_id(base_url: str) -> str:
    return hashlib.sha256(base_url.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ServerSlots:
    """One Ollama server with a gateway queue: its slots (> 0) and its id in Redis."""

    upstream: Upstream
    slots: int
    id: str
    label: str  # `ollama_N`: the metric label, by position in OLLAMA_BASE_URLS


@dataclass(frozen=True, slots=True)
class Layout:
    """The limited servers (slots > 0) in configuration order, and the scripts' fixed
    KEYS and leading ARGV (see scheduler/lua/common.lua)."""

    servers: tuple[ServerSlots, ...]
    keys: tuple[str, ...]
    server_args: tuple[str, ...]
    _by_id: dict[str, ServerSlots]

    @classmethod
    def build(cls, servers: Sequence[ServerSlots], namespace: str = NAMESPACE) -> Layout:
        keys = [namespace + name for name in GLOBAL_KEYS]
        for server in servers:
            keys += [f"{namespace}{name}:{server.id}" for name in PER_SERVER_KEYS]
        args = (
            str(len(servers)),
            *(s.id for s in servers),
            *(str(s.slots) for s in servers),
        )
        return cls(tuple(servers), tuple(keys), args, {s.id: s for s in servers})

    def by_id(self, ident: str) -> ServerSlots | None:
        return self._by_id.get(ident)

    def wake_channel(self, namespace: str = NAMESPACE) -> str:
        """The prefix of every replica's wake-up channel (`<prefix><replica id>`)."""
        return namespace + "wake:"
