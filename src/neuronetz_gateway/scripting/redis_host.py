"""`RedisHost`: scripts on Redis, shared by every replica of the gateway.

One `EVALSHA` per run over `RespClient` (one pipelined connection per process), or
over `ClusterClient` on a Redis Cluster (one per master, redis_cluster/). A
Redis that does not know the script (`NOSCRIPT`: restarted, `SCRIPT FLUSH`) gets it
with `SCRIPT LOAD` and the run is retried once. Packed key lists are cached: callers
such as the limiter pass the same keys for a whole day.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import hiredis

from neuronetz_gateway.redis_cluster.commands import RedisCommands
from neuronetz_gateway.scripting.host import (
    Argument,
    Reply,
    ScriptFailed,
    StoreUnavailable,
)
from neuronetz_gateway.scripting.resp import RespError, pack_items
from neuronetz_gateway.scripting.script import Script

PACKED_KEYS_CACHE_SIZE = 4096


def _is_noscript(reply: object) -> bool:
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT")


class RedisHost:
    """A `ScriptHost` on one Redis (EVALSHA, SCRIPT LOAD after NOSCRIPT)."""

    def __init__(self, client: RedisCommands) -> None:
        self.client = client
        self._heads: dict[str, bytes] = {}
        self._packed_keys: dict[tuple[str, ...], bytes] = {}

    def _head(self, script: Script) -> bytes:
        head = self._heads.get(script.sha)
        if head is None:
            head = self._heads[script.sha] = pack_items(("EVALSHA", script.sha))
        return head

    def _keys(self, keys: Sequence[str]) -> bytes:
        as_tuple = keys if isinstance(keys, tuple) else tuple(keys)
        packed = self._packed_keys.get(as_tuple)
        if packed is None:
            if len(self._packed_keys) >= PACKED_KEYS_CACHE_SIZE:
                self._packed_keys.clear()
            packed = pack_items((str(len(keys)), *keys))
            self._packed_keys[as_tuple] = packed
        return packed

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Argument],
        *,
        deferred: bool = False,
    ) -> Reply:
        """The script's reply; `StoreUnavailable` or `ScriptFailed` (host.py)."""
        count = 3 + len(keys) + len(args)
        packed_args = pack_items(args)
        parts = (self._head(script), self._keys(keys), packed_args)
        try:
            reply = await self.client.execute_packed(count, *parts, deferred=deferred)
            if _is_noscript(reply):
                loaded = await self.client.execute("SCRIPT", "LOAD", script.source)
                if isinstance(loaded, hiredis.ReplyError):
                    raise ScriptFailed(f"SCRIPT LOAD {script.name}: {loaded}")
                reply = await self.client.execute_packed(count, *parts)
        except RespError as error:
            raise StoreUnavailable(str(error)) from error
        if isinstance(reply, hiredis.ReplyError):
            raise ScriptFailed(f"{script.name}: {reply}")
        return cast(Reply, reply)

    def submit(
        self, script: Script, keys: Sequence[str], args: Sequence[Argument]
    ) -> asyncio.Future[Reply]:
        """`run` queued before this returns (host.py): one future and one callback,
        no task, when the connection is up; else (or after `NOSCRIPT`) `run` in a task."""
        count = 3 + len(keys) + len(args)
        sent = self.client.send_packed(
            count, self._head(script), self._keys(keys), pack_items(args)
        )
        if sent is None:
            return asyncio.ensure_future(self.run(script, keys, args))
        result: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def answered(sent: asyncio.Future[object]) -> None:
            if result.cancelled():
                return
            error = sent.exception()
            if error is not None:
                result.set_exception(StoreUnavailable(str(error)))
                return
            reply = sent.result()
            if _is_noscript(reply):  # run loads the script and tries once more
                retry = asyncio.ensure_future(self.run(script, keys, args))
                retry.add_done_callback(lambda done: _copy(done, result))
            elif isinstance(reply, hiredis.ReplyError):
                result.set_exception(ScriptFailed(f"{script.name}: {reply}"))
            else:
                result.set_result(cast(Reply, reply))

        sent.add_done_callback(answered)
        return result


def _copy(source: asyncio.Future[Reply], target: asyncio.Future[Reply]) -> None:
    if target.cancelled():
        return
    if source.cancelled():
        target.cancel()
        return
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())
