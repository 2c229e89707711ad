"""`ClusterClient` against a real three-master Redis Cluster: commands reach the owner of
their slot, and MOVED, ASK and TRYAGAIN during a resharding are followed without losing
or repeating a write (docs/REDIS_CLUSTER.md)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import hiredis
import pytest

from neuronetz_gateway.redis_cluster import ClusterClient, key_slot
from neuronetz_gateway.redis_cluster.topology import Redirect
from neuronetz_gateway.scripting.resp import RespError
from tests.support.processes import free_port
from tests.support.redis_cluster import RedisClusterNodes

# Increments each of its keys once; two keys make it a multi-key command (TRYAGAIN).
INCR_BOTH = "redis.call('INCR', KEYS[1]); return redis.call('INCR', KEYS[2])"


@dataclass
class Observed:
    """The client under test and the redirections it followed, with an event per kind."""

    client: ClusterClient
    redirects: list[Redirect] = field(default_factory=list)
    events: dict[str, asyncio.Event] = field(default_factory=dict)

    def record(self, redirect: Redirect) -> None:
        self.redirects.append(redirect)
        self.events.setdefault(redirect.kind, asyncio.Event()).set()

    def event(self, kind: str) -> asyncio.Event:
        return self.events.setdefault(kind, asyncio.Event())

    def kinds(self) -> list[str]:
        return [redirect.kind for redirect in self.redirects]


@pytest.fixture
async def observed(cluster: RedisClusterNodes) -> AsyncIterator[Observed]:
    holder: list[Observed] = []
    client = ClusterClient(cluster.url, on_redirect=lambda r: holder[0].record(r))
    holder.append(Observed(client))
    yield holder[0]
    await client.aclose()


def other_master(cluster: RedisClusterNodes, port: int) -> int:
    return next(p for p in cluster.ports if p != port)


def tag() -> str:
    return uuid.uuid4().hex


async def test_each_command_reaches_the_owner_of_its_slot(
    cluster: RedisClusterNodes, observed: Observed
) -> None:
    keys = [f"{{{tag()}}}:k" for _ in range(60)]
    for key in keys:
        assert await observed.client.execute("SET", key, key) == b"OK"
    for key in keys:
        assert cluster.node(cluster.owner(key_slot(key))).get(key) == key
    assert len({cluster.owner(key_slot(key)) for key in keys}) == 3  # all masters used
    assert observed.redirects == []
    assert await observed.client.execute("PING") == b"PONG"


async def test_moved_is_followed_and_the_map_read_again(
    cluster: RedisClusterNodes, observed: Observed
) -> None:
    key = f"{{{tag()}}}:moved"
    slot = key_slot(key)
    assert await observed.client.execute("SET", key, "1") == b"OK"
    target = other_master(cluster, cluster.owner(slot))
    await asyncio.to_thread(cluster.move_slot, slot, target)

    assert await observed.client.execute("INCR", key) == 2
    assert observed.kinds() == ["MOVED"]
    assert observed.client.slot_map.owners[slot] == ("127.0.0.1", target)
    assert await observed.client.execute("INCR", key) == 3
    assert observed.kinds() == ["MOVED"]  # the map was read again: no second MOVED
    assert cluster.node(target).get(key) == "3"


async def test_ask_is_followed_with_asking_during_a_migration(
    cluster: RedisClusterNodes, observed: Observed
) -> None:
    key = f"{{{tag()}}}:asked"
    slot = key_slot(key)
    assert await observed.client.execute("SET", key, "10") == b"OK"
    source = cluster.owner(slot)
    target = other_master(cluster, source)
    migrated = asyncio.Event()
    loop = asyncio.get_running_loop()
    resume = asyncio.Event()

    def between_keys(_: int) -> None:
        loop.call_soon_threadsafe(migrated.set)
        asyncio.run_coroutine_threadsafe(resume.wait(), loop).result(10)

    moving = asyncio.create_task(asyncio.to_thread(cluster.move_slot, slot, target, between_keys))
    await migrated.wait()
    # The key is at the target, the slot still at the source: ASK, then ASKING + INCR.
    assert await observed.client.execute("INCR", key) == 11
    # A new key of the migrating slot is created at the target, not the source.
    fresh = key + ":new"
    assert await observed.client.execute("SET", fresh, "x") == b"OK"
    assert observed.kinds() == ["ASK", "ASK"]
    assert cluster.keys_at(source, slot) == []
    resume.set()
    await moving
    assert cluster.node(target).get(key) == "11"
    assert cluster.node(target).get(fresh) == "x"


async def test_tryagain_waits_for_the_migration_and_writes_once(
    cluster: RedisClusterNodes, observed: Observed
) -> None:
    base = f"{{{tag()}}}"
    first, second = f"{base}:a", f"{base}:b"
    slot = key_slot(first)
    for key in (first, second):
        assert await observed.client.execute("SET", key, "0") == b"OK"
    target = other_master(cluster, cluster.owner(slot))
    loop = asyncio.get_running_loop()
    half_moved = asyncio.Event()
    resume = asyncio.Event()

    def between_keys(moved: int) -> None:
        if moved == 1:  # one key at each node: multi-key commands get TRYAGAIN
            loop.call_soon_threadsafe(half_moved.set)
            asyncio.run_coroutine_threadsafe(resume.wait(), loop).result(10)

    moving = asyncio.create_task(asyncio.to_thread(cluster.move_slot, slot, target, between_keys))
    await half_moved.wait()
    script = asyncio.create_task(observed.client.execute("EVAL", INCR_BOTH, "2", first, second))
    await observed.event("TRYAGAIN").wait()
    assert not script.done()
    resume.set()
    await moving
    assert await script == 1
    assert cluster.node(target).mget(first, second) == ["1", "1"]  # once, not twice


async def test_tryagain_gives_up_after_its_budget_and_writes_nothing(
    cluster: RedisClusterNodes,
) -> None:
    base = f"{{{tag()}}}"
    first, second = f"{base}:a", f"{base}:b"
    slot = key_slot(first)
    setup = ClusterClient(cluster.url)
    client = ClusterClient(cluster.url, tryagain_budget_seconds=0.1)
    try:
        for key in (first, second):
            await setup.execute("SET", key, "0")
        target = other_master(cluster, cluster.owner(slot))
        loop = asyncio.get_running_loop()
        half_moved = asyncio.Event()
        resume = asyncio.Event()

        def between_keys(moved: int) -> None:
            if moved == 1:
                loop.call_soon_threadsafe(half_moved.set)
                asyncio.run_coroutine_threadsafe(resume.wait(), loop).result(10)

        moving = asyncio.create_task(
            asyncio.to_thread(cluster.move_slot, slot, target, between_keys)
        )
        await half_moved.wait()
        reply = await client.execute("EVAL", INCR_BOTH, "2", first, second)
        resume.set()
        await moving
        assert isinstance(reply, hiredis.ReplyError)
        assert str(reply).startswith("TRYAGAIN")
        assert cluster.node(target).mget(first, second) == ["0", "0"]
    finally:
        await setup.aclose()
        await client.aclose()


async def test_script_load_reaches_every_master(
    cluster: RedisClusterNodes, observed: Observed
) -> None:
    script = "return redis.call('INCR', KEYS[1])"
    assert await observed.client.execute("SCRIPT", "FLUSH") == b"OK"
    sha = await observed.client.execute("SCRIPT", "LOAD", script)
    assert isinstance(sha, bytes)
    for port in cluster.ports:
        assert cluster.node(port).script_exists(sha.decode()) == [True]
    keys = [f"{{{tag()}}}:s" for _ in range(30)]
    replies = [await observed.client.execute("EVALSHA", sha, "1", key) for key in keys]
    assert replies == [1] * 30


async def test_an_unreachable_cluster_is_an_error_not_a_hang() -> None:
    client = ClusterClient(f"redis://127.0.0.1:{free_port()}/0", timeout=0.3)
    try:
        with pytest.raises(RespError):
            await client.execute("PING")
    finally:
        await client.aclose()


def test_a_cluster_seed_has_database_zero_and_a_tcp_address() -> None:
    with pytest.raises(ValueError, match="database 0"):
        ClusterClient("redis://127.0.0.1:7000/3")
    with pytest.raises(ValueError, match="redis://"):
        ClusterClient("unix:///run/redis.sock")
