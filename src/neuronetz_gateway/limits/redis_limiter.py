"""`RedisLimiter`: admission and settlement shared by every replica (SPEC §4.5, §4.6).

One script round trip admits a request, one settles it; a request with no limits at
all costs none. Budget counters missing from Redis are rebuilt from the `UsageSource`
before the script uses them. Every failure to reach Redis or to rebuild a counter is
`LimiterUnavailable`: the gateway fails closed, it never admits unmetered.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.config import Settings
from neuronetz_gateway.limits import scripts
from neuronetz_gateway.limits.script_limiter import ScriptLimiter, ScriptName
from neuronetz_gateway.limits.types import LimiterUnavailable
from neuronetz_gateway.limits.usage_source import PostgresUsageSource, UsageSource

log = structlog.get_logger(__name__)


class RedisScripts:
    """The limiter's Lua scripts on one Redis (EVALSHA, reloaded after NOSCRIPT)."""

    def __init__(self, redis: Redis) -> None:
        self._scripts = {
            "admit": redis.register_script(scripts.ADMIT),
            "settle": redis.register_script(scripts.SETTLE),
            "refresh": redis.register_script(scripts.REFRESH),
        }

    async def run(self, script: ScriptName, keys: Sequence[str], args: Sequence[str]) -> object:
        try:
            return await self._scripts[script](keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            log.error("limiter_unavailable", error=type(error).__name__)
            raise LimiterUnavailable("the rate-limit store is unavailable") from error


class RedisLimiter(ScriptLimiter):
    """The `Limiter` on Redis: one Lua script per admission, one per settlement."""

    def __init__(
        self,
        redis: Redis,
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


def create_limiter(settings: Settings, redis: Redis, engine: AsyncEngine) -> RedisLimiter:
    """The gateway's limiter, configured from `settings`."""
    return RedisLimiter(
        redis,
        PostgresUsageSource(engine),
        lease_seconds=settings.concurrency_lease_seconds,
        default_max_output_tokens=settings.budget_default_max_output_tokens,
    )
