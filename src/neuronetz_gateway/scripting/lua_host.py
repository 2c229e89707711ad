"""`LuaHost`: scripts run in this process on a store kept inside Lua (standalone mode).

The very Lua that Redis runs (see `Script`), compiled once per process by lupa into a
function of (KEYS, ARGV), on LuaJIT's interpreter when the wheel ships LuaJIT (Lua 5.1
semantics, as Redis), else on Lua 5.4. The store lives in Lua tables
(lua/keyspace.lua) and the Redis commands scripts use are implemented in Lua
(lua/commands.lua), so a run is one call from Python into Lua and `redis.call` never
comes back into Python. Arguments cross as plain byte strings, a key list once (then
by number); the reply comes back flat (lua/host.lua) and is rebuilt here.

Key expiry follows `clock` (epoch seconds, default `time.time`), read once per run:
a script sees one instant, as on Redis. Expired keys are dropped when touched and, for
keys nobody touches again, by a sweep at most every `PURGE_INTERVAL_SECONDS`.

Atomic by construction: a run is synchronous (no await inside), so on one event loop
no other run interleaves with it. Not thread-safe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, cast

from neuronetz_gateway.scripting.host import Argument, Reply, ScriptFailed
from neuronetz_gateway.scripting.script import Script

try:
    from lupa import luajit21 as lua
except ImportError:  # a lupa wheel without LuaJIT for this platform
    from lupa import lua54 as lua  # same API, other runtime

PURGE_INTERVAL_SECONDS = 60.0
# Key lists handed to Lua once and named by a number after that (callers pass the same
# keys for many runs); all are forgotten when this many are kept.
KEY_LISTS_CACHE_SIZE = 4096
RUNTIME = "LuaJIT" if lua.__name__.endswith("luajit21") else "Lua 5.4"

LuaFunction = Callable[..., Any]


def _source(name: str) -> bytes:
    return resources.files(__package__).joinpath("lua", name).read_bytes()


def _encode(args: Sequence[Argument]) -> list[bytes]:
    return [
        arg.encode() if isinstance(arg, str) else b"%d" % arg if isinstance(arg, int) else arg
        for arg in args
    ]


def _decode(flat: tuple[object, ...], at: int) -> tuple[Reply, int]:
    """The reply starting at `flat[at]` (an array is True, its length, its items) and
    the index after it."""
    token = flat[at]
    if token is True:
        items: list[Reply] = []
        at += 2
        for _ in range(cast(int, flat[at - 1])):
            item, at = _decode(flat, at)
            items.append(item)
        return items, at
    return cast(Reply, token), at + 1


def _reply(result: tuple[object, ...], what: str) -> Reply:
    if result[0] is not True:
        message = result[1]
        text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
        raise ScriptFailed(f"{what}: {text}")
    return _decode(result, 1)[0]


class LuaHost:
    """A `ScriptHost` in this process, with its own store (one per limiter, or shared)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # No Python object is reachable from Lua: scripts see only what host.lua gives.
        self._lua = lua.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
        if RUNTIME == "LuaJIT":
            # The interpreter only: scripts are short and run once per call, so traces
            # rarely pay off, and paths the compiler aborts on (string formatting, varargs)
            # are retried again and again, costing ~30 % more per run (docs/SCRIPTING.md).
            self._lua.execute(b"jit.off()")
        keyspace = self._lua.execute(_source("keyspace.lua"))
        arguments = self._lua.execute(_source("arguments.lua"))
        commands = self._lua.execute(_source("commands.lua"), keyspace, arguments)
        self._lua.execute(_source("sorted_sets.lua"), keyspace, arguments, commands)
        host = self._lua.execute(_source("host.lua"), keyspace, commands)
        # Indexed by bytes (encoding=None), not attributes: lupa tables have keys() etc.
        self._compile: LuaFunction = host[b"compile"]
        self._command: LuaFunction = host[b"command"]
        self._purge: LuaFunction = host[b"purge"]
        self._keys: LuaFunction = host[b"keys"]
        self._flush: LuaFunction = host[b"flush"]
        self._runs: dict[str, LuaFunction] = {}
        self._keep_keys: LuaFunction = host[b"keep_keys"]
        self._forget_keys: LuaFunction = host[b"forget_keys"]
        self._key_lists: dict[tuple[str, ...], int] = {}
        self._purged_at = time.monotonic()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _compiled(self, script: Script) -> LuaFunction:
        run = self._runs.get(script.sha)
        if run is None:
            try:
                run = self._compile(script.name.encode(), script.source.encode())
            except lua.LuaError as error:
                raise ScriptFailed(f"{script.name} does not compile: {error}") from error
            self._runs[script.sha] = run
        return cast(LuaFunction, run)

    def _keys_id(self, keys: Sequence[str]) -> int:
        """The number Lua knows `keys` by (handed over on first use)."""
        as_tuple = keys if isinstance(keys, tuple) else tuple(keys)
        keys_id = self._key_lists.get(as_tuple)
        if keys_id is None:
            if len(self._key_lists) >= KEY_LISTS_CACHE_SIZE:
                self._key_lists.clear()
                self._forget_keys()
            keys_id = self._key_lists[as_tuple] = len(self._key_lists) + 1
            self._keep_keys(keys_id, *(key.encode() for key in as_tuple))
        return keys_id

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Argument],
        *,
        deferred: bool = False,
    ) -> Reply:
        """The script's reply; `ScriptFailed` if it raised an error (host.py). Runs at
        once, `deferred` or not: there is no write to save."""
        return self.run_now(script, keys, args)

    def submit(
        self, script: Script, keys: Sequence[str], args: Sequence[Argument]
    ) -> asyncio.Future[Reply]:
        """`run`, done by the time this returns (host.py)."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(self.run_now(script, keys, args))
        except ScriptFailed as error:
            future.set_exception(error)
        return future

    def run_now(self, script: Script, keys: Sequence[str], args: Sequence[Argument]) -> Reply:
        """`run`, synchronously (for callers outside an event loop)."""
        monotonic = time.monotonic()
        if monotonic - self._purged_at >= PURGE_INTERVAL_SECONDS:
            self._purged_at = monotonic
            self._purge(self._now_ms())
        run = self._compiled(script)
        result = run(self._now_ms(), self._keys_id(keys), *_encode(args))
        return _reply(result, script.name)

    def command(self, *args: Argument) -> Reply:
        """One store command, run as a script's `redis.call` would run it, with its reply
        as `run` gives replies (for inspection and tests; scripts are the API)."""
        return _reply(self._command(self._now_ms(), *_encode(args)), "command")

    def keys(self) -> list[str]:
        """The keys that exist now."""
        found = self._keys(self._now_ms())
        if found is None:
            return []
        values = found if isinstance(found, tuple) else (found,)
        return [cast(bytes, key).decode() for key in values]

    def purge_expired(self) -> int:
        """Drop every expired key now; returns how many were dropped."""
        return int(self._purge(self._now_ms()))

    def flush(self) -> None:
        """Forget every key (what a restart of the process does)."""
        self._flush()
