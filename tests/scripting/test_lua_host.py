"""`LuaHost` on its own: expiry follows its clock, scripts are sandboxed like on Redis,
failures are `ScriptFailed`, and a store belongs to one host."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from neuronetz_gateway.scripting import (
    LuaHost,
    RedisHost,
    RespClient,
    RespError,
    Script,
    ScriptFailed,
    StoreUnavailable,
)
from neuronetz_gateway.scripting.lua_host import RUNTIME
from tests.support.databases import REDIS_URL


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


TOUCH = Script(
    "touch", "redis.call('HSET', KEYS[1], 'f', ARGV[1]) return redis.call('PTTL', KEYS[1])"
)


def test_keys_expire_on_the_hosts_clock_and_writes_keep_the_ttl() -> None:
    clock = Clock()
    host = LuaHost(clock)
    assert host.command("SET", "s", "v", "PX", "1000") == b"OK"
    assert host.run_now(TOUCH, ["h"], ["1"]) == -1
    assert host.command("PEXPIRE", "h", "500") == 1
    clock.now += 0.3
    assert host.run_now(TOUCH, ["h"], ["2"]) == 200  # a write keeps the TTL
    clock.now += 0.2
    assert host.command("HGET", "h", "f") == b"2"  # expired only once past its time
    clock.now += 0.001
    assert host.command("HGET", "h", "f") is None
    assert host.keys() == ["s"]
    clock.now += 0.5
    assert host.command("EXISTS", "s") == 0


def test_purge_drops_keys_nobody_touches_again() -> None:
    clock = Clock()
    host = LuaHost(clock)
    for key in ("a", "b", "c"):
        host.command("SET", key, "v", "PX", "100")
    host.command("SET", "kept", "v")
    clock.now += 1
    assert host.purge_expired() == 3
    assert host.keys() == ["kept"]
    host.flush()
    assert host.keys() == []


def test_each_host_has_its_own_store() -> None:
    first, second = LuaHost(), LuaHost()
    first.command("SET", "k", "v")
    assert second.command("GET", "k") is None


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("x = 1", "readonly"),
        ("return undefined_name", "nonexistent global"),
        ("return redis.call('NOSUCHCOMMAND', 'k')", "unknown command"),
        ("return redis.call('HSET', 'k', 'f', {})", "must be strings or integers"),
        ("return redis.error_reply('ERR mine')", "ERR mine"),
        ("return 1 +", "does not compile"),
        ("return python", "nonexistent global"),  # no way back into the process
    ],
)
def test_failing_scripts_raise_script_failed(source: str, error: str) -> None:
    with pytest.raises(ScriptFailed, match=error):
        LuaHost().run_now(Script("failing", source), [], [])


def test_redis_pcall_returns_the_error_as_on_redis() -> None:
    host = LuaHost()
    host.command("SET", "s", "v")
    script = Script("pcall", "return redis.pcall('HGET', KEYS[1], 'f')['err']")
    assert (
        host.run_now(script, ["s"], [])
        == b"WRONGTYPE Operation against a key holding the wrong kind of value"
    )


def test_the_fast_runtime_is_used() -> None:
    assert RUNTIME == "LuaJIT"


async def test_redis_reloads_a_script_it_forgot(redis_host: RedisHost) -> None:
    script = Script("forgotten", "return 'still here'")
    assert await redis_host.run(script, [], []) == b"still here"
    await redis_host.client.execute("SCRIPT", "FLUSH")
    assert await redis_host.run(script, [], []) == b"still here"


async def test_a_script_error_on_redis_is_script_failed(redis_host: RedisHost) -> None:
    with pytest.raises(ScriptFailed, match="ERR mine"):
        await redis_host.run(Script("failing", "return redis.error_reply('ERR mine')"), [], [])


# -- submit: a run queued before the call returns, its reply a future -------------------

ECHO = Script("echo", "return {KEYS[1], ARGV[1]}")


async def test_submit_gives_what_run_gives_on_both_hosts(
    redis_host: RedisHost, lua_host: LuaHost
) -> None:
    await redis_host.client.execute("PING")  # connected: the command is queued at once
    for host in (redis_host, lua_host):
        assert await host.submit(ECHO, ["k"], ["a"]) == await host.run(ECHO, ["k"], ["a"])


async def test_submit_before_any_connection_still_runs(redis_host: RedisHost) -> None:
    assert await redis_host.submit(ECHO, ["k"], ["b"]) == [b"k", b"b"]


async def test_submit_reloads_a_script_redis_forgot(redis_host: RedisHost) -> None:
    script = Script("forgotten-submitted", "return 'loaded again'")
    assert await redis_host.run(script, [], []) == b"loaded again"
    await redis_host.client.execute("SCRIPT", "FLUSH")

    assert await redis_host.submit(script, [], []) == b"loaded again"


async def test_a_failing_submitted_script_is_script_failed(
    redis_host: RedisHost, lua_host: LuaHost
) -> None:
    await redis_host.client.execute("PING")
    failing = Script("failing-submitted", "return redis.error_reply('ERR mine')")
    for host in (redis_host, lua_host):
        with pytest.raises(ScriptFailed, match="ERR mine"):
            await host.submit(failing, [], [])


async def test_a_store_that_does_not_answer_fails_a_submitted_script_as_unavailable() -> None:
    client = RespClient(REDIS_URL, timeout=0.2)
    host = RedisHost(client)
    try:
        await client.execute("PING")
        # A blocking command ahead of it on the one connection: no reply in time.
        blocked = asyncio.ensure_future(client.execute("BLPOP", f"nz:test:{uuid.uuid4().hex}", "5"))
        await asyncio.sleep(0)  # the BLPOP is queued first
        with pytest.raises(StoreUnavailable):
            await host.submit(ECHO, ["k"], ["c"])
        with pytest.raises(RespError):
            await blocked
    finally:
        await client.aclose()
