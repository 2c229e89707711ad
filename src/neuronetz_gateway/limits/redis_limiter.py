"""`RedisLimiter`: admission and settlement shared by every replica (docs/REFERENCE.md §4.5, §4.6).

One script round trip admits a request, one settles it; a request with no limits at
all costs none. Budget counters missing from Redis are rebuilt from the `UsageSource`
before the script uses them. Every failure to reach Redis or to rebuild a counter is
`LimiterUnavailable`: the gateway fails closed, it never admits unmetered.

The scripts run over `RespClient` (limits/resp.py), a pipelined client made for this
hot path, with EVALSHA and a reload after NOSCRIPT (a Redis restart, `SCRIPT FLUSH`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import hiredis
import structlog

from neuronetz_gateway.limits import scripts
from neuronetz_gateway.limits.resp import Reply, RespClient, RespError, pack_items
from neuronetz_gateway.limits.script_limiter import ScriptLimiter, ScriptName
from neuronetz_gateway.limits.types import LimiterUnavailable
from neuronetz_gateway.limits.usage_source import UsageSource

log = structlog.get_logger(__name__)

_SOURCES: dict[ScriptName, str] = {
    "admit": scripts.ADMIT,
    "settle": scripts.SETTLE,
    "refresh": scripts.REFRESH,
}


def _is_noscript(reply: Reply) -> bool:
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT")


# Packed key lists are reused: a subject's key names repeat for a whole day.
PACKED_KEYS_CACHE_SIZE = 4096


class RedisScripts:
    """The limiter's Lua scripts on one Redis (EVALSHA, reloaded after NOSCRIPT)."""

    def __init__(self, client: RespClient) -> None:
        self._client = client
        self._heads = {
            name: pack_items(
                ("EVALSHA", hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())
            )
            for name, source in _SOURCES.items()
        }
        self._packed_keys: dict[tuple[str, ...], bytes] = {}

    def _keys(self, keys: tuple[str, ...]) -> bytes:
        packed = self._packed_keys.get(keys)
        if packed is None:
            if len(self._packed_keys) >= PACKED_KEYS_CACHE_SIZE:
                self._packed_keys.clear()
            packed = pack_items((str(len(keys)), *keys))
            self._packed_keys[keys] = packed
        return packed

    async def run(self, script: ScriptName, keys: Sequence[str], args: Sequence[str]) -> object:
        count = 3 + len(keys) + len(args)
        parts = (self._heads[script], self._keys(tuple(keys)), pack_items(args))
        try:
            reply = await self._client.execute_packed(count, *parts)
            if _is_noscript(reply):
                loaded = await self._client.execute("SCRIPT", "LOAD", _SOURCES[script])
                if isinstance(loaded, hiredis.ReplyError):
                    raise RespError("SCRIPT LOAD refused")
                reply = await self._client.execute_packed(count, *parts)
        except RespError as error:
            log.error("limiter_unavailable", error=str(error))
            raise LimiterUnavailable("the rate-limit store is unavailable") from error
        if isinstance(reply, hiredis.ReplyError):
            # A script error is a bug or a Redis in trouble (OOM, read-only replica):
            # either way nothing was decided, so nothing is admitted.
            log.error("limiter_script_failed", script=script, error=str(reply)[:200])
            raise LimiterUnavailable("the rate-limit store refused the script")
        return reply


class RedisLimiter(ScriptLimiter):
    """The `Limiter` on Redis: one Lua script per admission, one per settlement."""

    def __init__(
        self,
        redis: RespClient,
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
