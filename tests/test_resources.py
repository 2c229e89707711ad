"""The process's shared clients, against the real services."""

from __future__ import annotations

import asyncio
import uuid

from neuronetz_gateway.config import Settings
from neuronetz_gateway.resources import REDIS_MAX_CONNECTIONS, create_redis


async def test_a_burst_beyond_the_redis_pool_waits_instead_of_failing(settings: Settings) -> None:
    # More commands in flight than the pool has connections: each holds its connection
    # for 50 ms (BLPOP on a key nobody pushes to), so the burst must queue for the pool.
    # Failing here would turn a load spike into 503s and failed settlements.
    redis = create_redis(settings)
    key = f"nz:test:{uuid.uuid4().hex}"
    try:
        results = await asyncio.gather(
            *(redis.blpop([key], timeout=0.05) for _ in range(REDIS_MAX_CONNECTIONS + 50)),
            return_exceptions=True,
        )
    finally:
        await redis.aclose()
    assert [r for r in results if r is not None] == []
