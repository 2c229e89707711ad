"""Which servers a request may be sent to (docs/SCHEDULING.md): those in rotation among
its model's holders, minus the ones already tried. A server without a queue
(`OLLAMA_SLOTS=0`) takes a request without any script, so it wins over the queues."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from neuronetz_gateway.proxy.upstreams import Upstream, UpstreamPool
from neuronetz_gateway.scheduler.layout import ServerSlots


class Placement:
    """The candidate servers of a request, split by whether they have a queue."""

    def __init__(self, pool: UpstreamPool, limited: Sequence[ServerSlots]) -> None:
        self._pool = pool
        self._by_url = {s.upstream.base_url: s for s in limited}

    def limited(
        self, holders: Collection[str], exclude: Collection[Upstream]
    ) -> list[ServerSlots] | None:
        """The servers with a queue to ask; [] when an unlimited server can take the
        request (it goes there, no script); None when no server can."""
        candidates = self._candidates(holders, exclude)
        if not candidates:
            return None
        by_url = self._by_url
        if any(u.base_url not in by_url for u in candidates):
            return []
        return [by_url[u.base_url] for u in candidates]

    def unlimited(self, holders: Collection[str], exclude: Collection[Upstream]) -> list[str]:
        """The base URLs of the candidates without a queue."""
        candidates = self._candidates(holders, exclude)
        return [u.base_url for u in candidates if u.base_url not in self._by_url]

    def _candidates(
        self, holders: Collection[str], exclude: Collection[Upstream]
    ) -> list[Upstream]:
        excluded = {id(u) for u in exclude}
        return [u for u in self._pool.holders(holders) if u.in_rotation and id(u) not in excluded]
