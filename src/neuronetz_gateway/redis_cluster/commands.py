"""What the gateway asks of a Redis connection, one node or a whole cluster.

`RespClient` (one node, scripting/resp.py) and `ClusterClient` (redis_cluster/client.py)
both satisfy it, so the limiter and the readiness check are written once for both.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

Reply = object


class RedisCommands(Protocol):
    """Commands with replies in order; `RespError` when a command's fate is unknown."""

    async def execute(self, *args: bytes | str) -> Reply:
        """Send one command and return its reply (error replies are values, not raised)."""
        ...

    async def execute_packed(self, count: int, *parts: bytes, deferred: bool = False) -> Reply:
        """Send one command of `count` arguments, already packed as RESP bulk strings;
        `deferred`: nobody waits on its reply, it may share a later write."""
        ...

    def send_packed(self, count: int, *parts: bytes) -> asyncio.Future[Reply] | None:
        """`execute_packed` queued before this returns, its reply a future (failing
        with `RespError`); None when that would mean waiting (no connection yet, a
        cluster's routing): then call `execute_packed`."""
        ...

    async def aclose(self) -> None:
        """Close every connection; a later command connects again."""
        ...
