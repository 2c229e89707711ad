"""The in-process store answers every command it implements exactly as Redis does.

Each case is a sequence of commands run one by one through a script
(`redis.call(...)`) on real Redis and on `LuaHost`; every reply must be identical,
errors included (compared by their first word, e.g. WRONGTYPE). A command added to
lua/commands.lua gets its cases here.
"""

from __future__ import annotations

import pytest

from neuronetz_gateway.scripting import (
    LuaHost,
    RedisHost,
    Reply,
    Script,
    ScriptFailed,
    ScriptHost,
)

# KEYS[1] is the key (prefixed per test); ARGV is the command and its other arguments.
CALL = Script("call", "return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))")
# Numbers as scripts pass them: redis.call turns them into strings.
CALL_NUMBERS = Script(
    "call_numbers", "return redis.call('HSET', KEYS[1], 'a', 0, 'b', 12345678901234, 'c', -7)"
)

Command = tuple[str, ...]

CASES: dict[str, list[Command]] = {
    "strings": [
        ("GET", "s"),
        ("SET", "s", "v"),
        ("GET", "s"),
        ("SET", "s", "w", "NX"),
        ("SET", "s", "w", "XX"),
        ("SET", "t", "w", "XX"),
        ("GET", "t"),
        ("INCRBY", "n", "5"),
        ("INCR", "n"),
        ("DECRBY", "n", "8"),
        ("INCRBY", "s", "1"),
        ("SET", "p", "v", "PX", "60000"),
        ("EXISTS", "p"),
        ("TYPE", "p"),
        ("TYPE", "nothing"),
        ("DEL", "p"),
        ("DEL", "p"),
        ("EXISTS", "p"),
    ],
    "hashes": [
        ("HGET", "h", "a"),
        ("HSET", "h", "a", "1", "b", "2"),
        ("HSET", "h", "a", "3", "c", "4"),
        ("HGET", "h", "a"),
        ("HMGET", "h", "a", "x", "c"),
        ("HEXISTS", "h", "b"),
        ("HEXISTS", "h", "x"),
        ("HLEN", "h"),
        ("HINCRBY", "h", "a", "-10"),
        ("HINCRBY", "h", "new", "5"),
        ("HINCRBY", "h", "a", "x"),
        ("HDEL", "h", "a", "x", "b"),
        ("HLEN", "h"),
        ("HDEL", "h", "c", "new"),
        ("EXISTS", "h"),
        ("HMGET", "missing", "a"),
        ("HSET", "h2", "f", "text"),
        ("HINCRBY", "h2", "f", "1"),
        ("TYPE", "h2"),
        ("GET", "h2"),
    ],
    "sorted sets": [
        ("ZADD", "z", "5", "e", "1", "a", "3", "c", "3", "b"),
        ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
        ("ZADD", "z", "2", "e"),
        ("ZADD", "z", "CH", "2", "e", "9", "f"),
        ("ZADD", "z", "XX", "4", "a", "7", "g"),
        ("ZADD", "z", "NX", "0", "a", "0", "h"),
        ("ZRANGE", "z", "0", "0", "WITHSCORES"),
        ("ZRANGE", "z", "1", "2"),
        ("ZRANGE", "z", "-2", "-1"),
        ("ZRANGE", "z", "5", "1"),
        ("ZCARD", "z"),
        ("ZSCORE", "z", "c"),
        ("ZSCORE", "z", "nobody"),
        ("ZRANGEBYSCORE", "z", "-inf", "3"),
        ("ZRANGEBYSCORE", "z", "(2", "+inf", "WITHSCORES"),
        ("ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "1", "2"),
        ("ZRANGEBYSCORE", "z", "-inf", "(3", "LIMIT", "0", "100"),
        ("ZRANGEBYSCORE", "z", "x", "3"),
        ("ZREMRANGEBYSCORE", "z", "-inf", "(3"),
        ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
        ("ZREM", "z", "c", "nobody"),
        ("ZREMRANGEBYSCORE", "z", "3", "3"),
        ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
        ("ZREMRANGEBYSCORE", "z", "-inf", "+inf"),
        ("EXISTS", "z"),
        ("ZADD", "z", "XX", "1", "a"),
        ("EXISTS", "z"),
        ("ZADD", "big", "1764158400000", "m"),
        ("ZSCORE", "big", "m"),
        ("ZADD", "w", "1", "m"),
        ("HGET", "w", "f"),
    ],
    "lexical ranges": [
        ("ZADD", "l", "0", "a:1:x", "0", "a:2:y", "0", "b:1:z", "0", "ab:1:w", "0", "c"),
        ("ZRANGEBYLEX", "l", "[a:", "(a;"),
        ("ZRANGEBYLEX", "l", "[a:", "(a;", "LIMIT", "0", "1"),
        ("ZRANGEBYLEX", "l", "[a:", "(a;", "LIMIT", "1", "5"),
        ("ZRANGEBYLEX", "l", "(a:1:x", "+"),
        ("ZRANGEBYLEX", "l", "-", "[b:1:z"),
        ("ZRANGEBYLEX", "l", "-", "+", "LIMIT", "2", "2"),
        ("ZRANGEBYLEX", "l", "[d", "+"),
        ("ZRANGEBYLEX", "l", "[b:", "(b;"),
        ("ZRANGEBYLEX", "missing", "[a", "(b"),
        ("ZRANGEBYLEX", "l", "a", "(b"),
    ],
    "lexicographic ranges": [
        ("ZADD", "l", "0", "b:2", "0", "a:1", "0", "b:1", "0", "c", "0", "b"),
        ("ZRANGEBYLEX", "l", "-", "+"),
        ("ZRANGEBYLEX", "l", "[b:", "(b;", "LIMIT", "0", "1"),
        ("ZRANGEBYLEX", "l", "[b:", "(b;"),
        ("ZRANGEBYLEX", "l", "(b", "[c"),
        ("ZRANGEBYLEX", "l", "[b", "(b"),
        ("ZRANGEBYLEX", "l", "-", "(b:2", "LIMIT", "1", "10"),
        ("ZRANGEBYLEX", "l", "[a", "+", "LIMIT", "2", "-1"),
        ("ZRANGEBYLEX", "l", "+", "-"),
        ("ZRANGEBYLEX", "l", "[x", "+"),
        ("ZRANGEBYLEX", "l", "b", "+"),
        ("ZRANGEBYLEX", "missing", "[a", "+"),
        ("ZRANGEBYLEX", "l", "-", "+", "LIMIT", "0"),
    ],
    "expiry": [
        ("PTTL", "k"),
        ("PEXPIRE", "k", "1000"),
        ("HSET", "k", "f", "1"),
        ("PTTL", "k"),
        ("EXPIRE", "k", "100"),
        ("HSET", "k", "g", "1"),
        ("HDEL", "k", "f", "g"),
        ("PTTL", "k"),
        ("ZADD", "k", "1", "m"),
        ("PEXPIRE", "k", "0"),
        ("EXISTS", "k"),
        ("SET", "k", "v"),
        ("PTTL", "k"),
    ],
}


async def replies(host: ScriptHost, prefix: str, commands: list[Command]) -> list[Reply | str]:
    out: list[Reply | str] = []
    for name, key, *rest in commands:
        try:
            reply = await host.run(CALL, [prefix + key], [name, *rest])
        except ScriptFailed as error:
            # Error texts differ in their prefix (script name, line): compare the code.
            out.append("error " + str(error).split(": ", 1)[1].split()[0])
            continue
        # A TTL is compared as set or not (-1, -2): the two clocks are not the same.
        if name == "PTTL" and isinstance(reply, int) and reply > 0:
            reply = 1
        out.append(reply)
    return out


@pytest.mark.parametrize("case", list(CASES))
async def test_each_command_replies_as_on_redis(
    case: str, redis_host: RedisHost, lua_host: LuaHost, prefix: str
) -> None:
    commands = CASES[case]
    expected = await replies(redis_host, prefix, commands)
    assert await replies(lua_host, prefix, commands) == expected


async def test_numbers_become_strings_as_on_redis(
    redis_host: RedisHost, lua_host: LuaHost, prefix: str
) -> None:
    read = Script("read", "return redis.call('HMGET', KEYS[1], 'a', 'b', 'c')")
    for host in (redis_host, lua_host):
        assert await host.run(CALL_NUMBERS, [prefix + "h"], []) == 3
        assert await host.run(read, [prefix + "h"], []) == [b"0", b"12345678901234", b"-7"]


async def test_script_replies_convert_as_on_redis(redis_host: RedisHost, lua_host: LuaHost) -> None:
    script = Script(
        "convert",
        "return {1, 2.9, -2.9, 'text', true, false, {ARGV[1], {}}, redis.status_reply('OK'),"
        " nil, 'after nil'}",
    )
    expected = await redis_host.run(script, [], ["argument"])
    assert expected == [1, 2, -2, b"text", 1, None, [b"argument", []], b"OK"]
    assert await lua_host.run(script, [], ["argument"]) == expected
