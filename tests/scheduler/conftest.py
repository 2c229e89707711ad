"""Schedulers for the scheduler's tests, on real Redis and on the in-process host
(standalone mode), each test on servers of its own (random base URLs) so tests never
share queue state. `replicas(urls, slots)` starts one scheduler with its tick (and, on
Redis, its wake-up channel), as one gateway replica runs it; on the in-process host the
schedulers of one test share one store, as one process would."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from neuronetz_gateway.proxy.upstreams import UpstreamPool
from neuronetz_gateway.scheduler import ScriptStore, SlotScheduler, WaitTicket
from neuronetz_gateway.scheduler.service import QueueService
from neuronetz_gateway.scripting import LuaHost, RedisHost, RespClient
from tests.support.databases import REDIS_URL

LEASE_SECONDS = 3.0
REDIS, IN_PROCESS = "redis", "in-process"


def ticket(tenant: str, weight: int = 1, wait: float = 10.0) -> WaitTicket:
    now = asyncio.get_running_loop().time()
    return WaitTicket(tenant, weight, now + wait, now)


def fresh_urls(count: int = 1) -> list[str]:
    return [f"http://s{uuid.uuid4().hex[:12]}.test:11434" for _ in range(count)]


def tenant() -> str:
    """A tenant of its own: no other test shares its place in the fair order."""
    return str(uuid.uuid4())


async def wait_until_queued(scheduler: SlotScheduler, count: int) -> None:
    """Until `count` of `scheduler`'s acquire calls wait in the queue (at most 5 s)."""
    async with asyncio.timeout(5):
        while scheduler.waiting < count:
            await asyncio.sleep(0.005)  # polls local state the acquire calls set


ReplicaFactory = Callable[..., Any]


@pytest.fixture(params=[REDIS, IN_PROCESS])
def host_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def replicas(host_kind: str) -> AsyncIterator[ReplicaFactory]:
    in_process = LuaHost()
    async with AsyncExitStack() as stack:

        async def start(urls: list[str], slots: list[int], lease: float = LEASE_SECONDS) -> Any:
            if host_kind == REDIS:
                client = RespClient(REDIS_URL)
                stack.push_async_callback(client.aclose)
                store = ScriptStore(RedisHost(client))
            else:
                store = ScriptStore(in_process)
            scheduler = SlotScheduler(
                store,
                UpstreamPool(urls),
                slots,
                lease_seconds=lease,
                wake_channels=host_kind == REDIS,
            )
            service = QueueService(scheduler, REDIS_URL if host_kind == REDIS else None)
            await service.start()
            stack.push_async_callback(service.aclose)
            return scheduler

        yield start
