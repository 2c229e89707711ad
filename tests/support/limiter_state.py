"""What the limiter holds for a key and its tenant, read from where it keeps it.

Redis (the shared limiter) or the in-process store of standalone mode: the same key
layout (`limits.keys`), so one reader serves both. A request in flight holds a
concurrency lease (`live`) and a budget reservation (`resv`, and `resv` of each budget
counter); once it is settled, none of them remains.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from neuronetz_gateway.limits import MemoryLimiter
from neuronetz_gateway.limits.keys import Periods, subject_keys
from neuronetz_gateway.runtime import GatewayRuntime
from tests.support.databases import REDIS_URL


@dataclass(frozen=True)
class Held:
    """Leases, reservations and reserved budget tokens of one subject."""

    leases: int
    reservations: int
    reserved_tokens: int


NOTHING = Held(0, 0, 0)


async def held(runtime: GatewayRuntime, tenant_id: uuid.UUID, key_id: uuid.UUID) -> list[Held]:
    """What the key and its tenant hold right now, key first."""
    periods = Periods.at(time.time())
    subjects = [subject_keys(tenant_id, subject, periods) for subject in (key_id, None)]
    budgets = [(keys.daily, keys.monthly, keys.total) for keys in subjects]
    limiter = runtime.limiter
    if isinstance(limiter, MemoryLimiter):
        store = limiter.store
        return [
            Held(
                store.zcard(keys.live),
                len(store.hgetall(keys.reservations)),
                sum(
                    int(store.hgetall(c).get("resv", 0))
                    for c in (keys.daily, keys.monthly, keys.total)
                ),
            )
            for keys in subjects
        ]
    redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        found = []
        for keys, counters in zip(subjects, budgets, strict=True):
            reserved = [await redis.hget(counter, "resv") for counter in counters]
            found.append(
                Held(
                    await redis.zcard(keys.live),
                    await redis.hlen(keys.reservations),
                    sum(int(value or 0) for value in reserved),
                )
            )
        return found
    finally:
        await redis.aclose()


async def wait_until_released(
    runtime: GatewayRuntime, tenant_id: uuid.UUID, key_id: uuid.UUID, *, within: float = 1.0
) -> list[Held]:
    """What the key and its tenant hold once nothing is held, or after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        now = await held(runtime, tenant_id, key_id)
        if now == [NOTHING, NOTHING] or asyncio.get_running_loop().time() > deadline:
            return now
        await asyncio.sleep(0.02)  # settlement runs in the gateway's task: poll its result
