"""`MemoryLimiter`: the limiter of standalone mode, for one gateway process without Redis.

The same `ScriptLimiter` as `RedisLimiter`, running the scripts' Python port
(`memory_scripts`) on a `MemoryStore` in this process: same checks, same refusals, same
headers (docs/STANDALONE.md). Its counters live as long as the process; after a restart
budget counters are rebuilt from `usage_daily` on first use, exactly as after a Redis
flush, while rpm/tpm windows and leases start empty. Exact only while this process is
the only one serving: `Settings` refuses `GATEWAY_WORKERS` > 1 without Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from neuronetz_gateway.limits import memory_scripts
from neuronetz_gateway.limits.memory_store import MemoryStore
from neuronetz_gateway.limits.script_limiter import ScriptLimiter, ScriptName
from neuronetz_gateway.limits.usage_source import UsageSource

# Expired keys of subjects that stopped sending requests are dropped this often.
PURGE_INTERVAL_SECONDS = 60.0

_SCRIPTS: dict[ScriptName, Callable[[MemoryStore, Sequence[str], Sequence[str]], object]] = {
    "admit": memory_scripts.admit,
    "settle": memory_scripts.settle,
    "refresh": memory_scripts.refresh,
}


class MemoryScripts:
    """Runs the scripts on a `MemoryStore`; each run is atomic (it never awaits)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._purged_at = time.monotonic()

    async def run(self, script: ScriptName, keys: Sequence[str], args: Sequence[str]) -> object:
        now = time.monotonic()
        if now - self._purged_at >= PURGE_INTERVAL_SECONDS:
            self._purged_at = now
            self.store.purge_expired()
        return _SCRIPTS[script](self.store, keys, args)


class MemoryLimiter(ScriptLimiter):
    """The `Limiter` in this process's memory (standalone mode)."""

    def __init__(
        self,
        usage_source: UsageSource,
        *,
        lease_seconds: int,
        default_max_output_tokens: int,
        store: MemoryStore | None = None,
    ) -> None:
        self.store = store if store is not None else MemoryStore()
        super().__init__(
            MemoryScripts(self.store),
            usage_source,
            lease_seconds=lease_seconds,
            default_max_output_tokens=default_max_output_tokens,
        )
