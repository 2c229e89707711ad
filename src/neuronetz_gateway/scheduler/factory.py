"""Which queue for Ollama's slots this process keeps (docs/SCHEDULING.md)."""

from __future__ import annotations

from neuronetz_gateway.config import Settings
from neuronetz_gateway.proxy.upstreams import UpstreamPool
from neuronetz_gateway.scheduler.service import QueueService
from neuronetz_gateway.scheduler.slots import SlotScheduler
from neuronetz_gateway.scheduler.store import ScriptStore
from neuronetz_gateway.scripting import ScriptHost


def create_queue(
    settings: Settings, scripts: ScriptHost, pool: UpstreamPool, *, shared: bool
) -> tuple[SlotScheduler, QueueService] | None:
    """The scheduler and its background service, running its scripts on the process's
    `scripts` host (`Resources.scripts`): Redis, shared by every replica (`shared`:
    wake-ups by pub/sub), or standalone in this process (no pub/sub: every waiter is
    this process's). None when no server has a slot limit (`OLLAMA_SLOTS=0` everywhere)."""
    urls = settings.upstream_urls
    slots = [settings.slots_of(urls.index(u.base_url)) for u in pool.upstreams]
    if not any(slots):
        return None
    scheduler = SlotScheduler(
        ScriptStore(scripts),
        pool,
        slots,
        lease_seconds=settings.concurrency_lease_seconds,
        wake_channels=shared,
    )
    return scheduler, QueueService(scheduler, settings.redis_url)
