"""Where the scheduler's scripts run (docs/SCHEDULING.md): on Redis, shared by every
replica (`RedisHost`), or standalone in this process (`LuaHost`). The same Lua text and
the same replies on both (docs/SCRIPTING.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from neuronetz_gateway.scripting import Reply, Script, ScriptError, ScriptHost

ScriptName = Literal["acquire", "drop", "refresh"]
PACKAGE = "neuronetz_gateway.scheduler"
SCRIPTS: dict[ScriptName, Script] = {
    name: Script.load(PACKAGE, "lua/common.lua", f"lua/{name}.lua")
    for name in ("acquire", "drop", "refresh")
}


class QueueUnavailable(Exception):
    """The scheduler's store did not answer, or its script failed: nothing was decided."""


class ScriptStore:
    """The scheduler's three scripts on one host."""

    def __init__(self, host: ScriptHost) -> None:
        self._host = host

    async def run(
        self,
        script: ScriptName,
        keys: Sequence[str],
        args: Sequence[str],
        *,
        deferred: bool = False,
    ) -> Reply:
        try:
            return await self._host.run(SCRIPTS[script], keys, args, deferred=deferred)
        except ScriptError as error:
            raise QueueUnavailable(f"{type(error).__name__}: {error}") from error

    def submit(
        self, script: ScriptName, keys: Sequence[str], args: Sequence[str]
    ) -> asyncio.Future[Reply]:
        """`run` started now (`ScriptHost.submit`); the future's `ScriptError` is
        translated by `unwrap`."""
        return self._host.submit(SCRIPTS[script], keys, args)


def unwrap(future: asyncio.Future[Reply]) -> Reply:
    """The reply of a done `submit`, or `QueueUnavailable`."""
    try:
        return future.result()
    except ScriptError as error:
        raise QueueUnavailable(f"{type(error).__name__}: {error}") from error
