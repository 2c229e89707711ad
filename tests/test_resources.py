"""The process's shared clients, against the real services."""

from __future__ import annotations

import asyncio

from neuronetz_gateway.config import Settings
from neuronetz_gateway.resources import create_redis


async def test_a_burst_of_commands_shares_one_connection_without_failing(
    settings: Settings,
) -> None:
    # A load spike must not turn into 503s or failed settlements: commands are
    # pipelined on one connection instead of each taking one from a bounded pool.
    assert settings.redis_url is not None
    redis = create_redis(settings.redis_url)
    try:
        replies = await asyncio.gather(*(redis.execute("ECHO", str(i)) for i in range(5000)))
    finally:
        await redis.aclose()
    assert replies == [str(i).encode() for i in range(5000)]
