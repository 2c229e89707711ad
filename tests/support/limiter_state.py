"""What the limiter holds for a key and its tenant, read where it keeps it.

Read by a small script on the limiter's own script host: Redis (the shared limiter) or
the in-process Lua store of standalone mode, one reader for both. A request in flight
holds a concurrency lease (`live`) and a budget reservation (`resv`, and `resv` of each
budget counter); once it is settled, none of them remains.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import cast

from neuronetz_gateway.limits.keys import Periods, subject_keys
from neuronetz_gateway.limits.script_limiter import ScriptLimiter
from neuronetz_gateway.runtime import GatewayRuntime
from neuronetz_gateway.scripting import Script

# KEYS: live, resv, daily, monthly, total of one subject.
READ_HELD = Script(
    "read_held",
    """
    local reserved = 0
    for i = 3, 5 do reserved = reserved + (tonumber(redis.call('HGET', KEYS[i], 'resv')) or 0) end
    return {redis.call('ZCARD', KEYS[1]), redis.call('HLEN', KEYS[2]), reserved}
    """,
)


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
    limiter = runtime.limiter
    assert isinstance(limiter, ScriptLimiter)
    found = []
    for subject in (key_id, None):
        keys = subject_keys(tenant_id, subject, periods)
        names = [keys.live, keys.reservations, keys.daily, keys.monthly, keys.total]
        reply = await limiter.host.run(READ_HELD, names, [])
        assert isinstance(reply, list)
        leases, reservations, reserved = (int(cast(int, value)) for value in reply)
        found.append(Held(leases, reservations, reserved))
    return found


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
