"""Which queue for Ollama's slots this process keeps (docs/SCHEDULING.md)."""

from __future__ import annotations

from typing import Any

from neuronetz_gateway.config import Settings
from neuronetz_gateway.proxy.upstreams import UpstreamPool
from neuronetz_gateway.scheduler.service import QueueService
from neuronetz_gateway.scheduler.slots import SlotScheduler
from neuronetz_gateway.scheduler.store import ScriptStore
from neuronetz_gateway.scripting import LuaHost, RedisHost


def create_queue(
    settings: Settings, redis: Any, pool: UpstreamPool
) -> tuple[SlotScheduler, QueueService] | None:
    """The scheduler and its background service: its scripts on Redis (`redis`: the
    process's Redis client, as `RedisHost` takes it), or standalone in this process (no
    pub/sub: every waiter is this process's); None when no server has a slot limit
    (`OLLAMA_SLOTS=0` everywhere)."""
    urls = settings.upstream_urls
    slots = [settings.slots_of(urls.index(u.base_url)) for u in pool.upstreams]
    if not any(slots):
        return None
    host = RedisHost(redis) if redis is not None else LuaHost()
    scheduler = SlotScheduler(
        ScriptStore(host),
        pool,
        slots,
        lease_seconds=settings.concurrency_lease_seconds,
        wake_channels=redis is not None,
    )
    return scheduler, QueueService(scheduler, settings.redis_url)
