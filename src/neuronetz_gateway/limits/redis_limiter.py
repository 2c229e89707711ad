"""`RedisLimiter`: admission and settlement shared by every replica (docs/REFERENCE.md §4.5, §4.6).

One script round trip admits a request, one settles it; a request with no limits at
all costs none. Budget counters missing from Redis are rebuilt from the `UsageSource`
before the script uses them. Every failure to reach Redis or to rebuild a counter is
`LimiterUnavailable`: the gateway fails closed, it never admits unmetered.

The scripts run on `scripting.RedisHost`: EVALSHA over `RespClient`, a pipelined client
made for this hot path, and a reload after NOSCRIPT (a Redis restart, `SCRIPT FLUSH`).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from neuronetz_gateway.limits import scripts
from neuronetz_gateway.limits.script_limiter import ScriptLimiter, ScriptName
from neuronetz_gateway.limits.types import LimiterUnavailable
from neuronetz_gateway.limits.usage_source import UsageSource
from neuronetz_gateway.redis_cluster.commands import RedisCommands
from neuronetz_gateway.scripting import (
    RedisHost,
    Script,
    ScriptFailed,
    StoreUnavailable,
)

log = structlog.get_logger(__name__)

_SCRIPTS: dict[ScriptName, Script] = {
    "admit": scripts.ADMIT,
    "settle": scripts.SETTLE,
    "refresh": scripts.REFRESH,
}


class RedisScripts:
    """The limiter's scripts on one Redis (`RedisHost`); every failure is
    `LimiterUnavailable`."""

    def __init__(self, client: RedisCommands) -> None:
        self._host = RedisHost(client)

    async def run(self, script: ScriptName, keys: Sequence[str], args: Sequence[str]) -> object:
        try:
            return await self._host.run(_SCRIPTS[script], keys, args)
        except StoreUnavailable as error:
            log.error("limiter_unavailable", error=str(error))
            raise LimiterUnavailable("the rate-limit store is unavailable") from error
        except ScriptFailed as error:
            # A script error is a bug or a Redis in trouble (OOM, read-only replica):
            # either way nothing was decided, so nothing is admitted.
            log.error("limiter_script_failed", script=script, error=str(error)[:200])
            raise LimiterUnavailable("the rate-limit store refused the script") from error


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
            RedisScripts(redis),
            usage_source,
            lease_seconds=lease_seconds,
            default_max_output_tokens=default_max_output_tokens,
        )
