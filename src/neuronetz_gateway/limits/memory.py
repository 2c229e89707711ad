"""`MemoryLimiter`: the limiter of standalone mode, for one gateway process without Redis.

The same `ScriptLimiter` as `RedisLimiter`, running the very same Lua scripts on a
`LuaHost` (scripting/lua_host.py): same checks, same refusals, same headers
(docs/STANDALONE.md). Its counters live as long as the process; after a restart budget
counters are rebuilt from `usage_daily` on first use, exactly as after a Redis flush,
while rpm/tpm windows and leases start empty. Exact only while this process is the
only one serving: `Settings` refuses `GATEWAY_WORKERS` > 1 without Redis.
"""

from __future__ import annotations

from neuronetz_gateway.limits.script_limiter import ScriptLimiter
from neuronetz_gateway.limits.usage_source import UsageSource
from neuronetz_gateway.scripting import LuaHost


class MemoryLimiter(ScriptLimiter):
    """The `Limiter` in this process's memory (standalone mode)."""

    host: LuaHost

    def __init__(
        self,
        usage_source: UsageSource,
        *,
        lease_seconds: int,
        default_max_output_tokens: int,
        host: LuaHost | None = None,
    ) -> None:
        super().__init__(
            host if host is not None else LuaHost(),
            usage_source,
            lease_seconds=lease_seconds,
            default_max_output_tokens=default_max_output_tokens,
        )
