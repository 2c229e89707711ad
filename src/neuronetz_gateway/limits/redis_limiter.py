"""`RedisLimiter`: admission and settlement shared by every replica (docs/REFERENCE.md §4.5, §4.6).

One script round trip admits a request, one settles it; a request with no limits at
all costs none. Budget counters missing from Redis are rebuilt from the `UsageSource`
before the script uses them. Every failure to reach Redis or to rebuild a counter is
`LimiterUnavailable`: the gateway fails closed, it never admits unmetered.

The scripts run on `scripting.RedisHost`: EVALSHA over `RespClient`, a pipelined client
made for this hot path, and a reload after NOSCRIPT (a Redis restart, `SCRIPT FLUSH`).
"""

from __future__ import annotations

from neuronetz_gateway.limits.script_limiter import ScriptLimiter
from neuronetz_gateway.limits.usage_source import UsageSource
from neuronetz_gateway.redis_cluster.commands import RedisCommands
from neuronetz_gateway.scripting import RedisHost


class RedisLimiter(ScriptLimiter):
    """The `Limiter` on Redis: one Lua script per admission, one per settlement."""

    def __init__(
        self,
        redis: RedisCommands,
        usage_source: UsageSource,
        *,
        lease_seconds: int,
        default_max_output_tokens: int,
    ) -> None:
        super().__init__(
            RedisHost(redis),
            usage_source,
            lease_seconds=lease_seconds,
            default_max_output_tokens=default_max_output_tokens,
        )
