"""Both script hosts on real stores: Redis (keys under a random prefix, deleted
afterwards) and a fresh `LuaHost`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from neuronetz_gateway.scripting import LuaHost, RedisHost, RespClient
from tests.support.databases import REDIS_URL


@pytest.fixture
async def redis_host() -> AsyncIterator[RedisHost]:
    client = RespClient(REDIS_URL)
    yield RedisHost(client)
    await client.aclose()


@pytest.fixture
def lua_host() -> LuaHost:
    return LuaHost()


@pytest.fixture
async def prefix(redis_host: RedisHost) -> AsyncIterator[str]:
    """A key prefix of this test alone; its Redis keys are deleted afterwards."""
    value = f"nz:test:{uuid.uuid4().hex}:"
    yield value
    keys = await redis_host.client.execute("KEYS", value + "*")
    if isinstance(keys, list) and keys:
        await redis_host.client.execute("DEL", *keys)
