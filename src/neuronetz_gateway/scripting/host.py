"""What every script host offers: run a `Script` atomically with keys and arguments.

Two hosts implement `ScriptHost`: `RedisHost` (EVALSHA on a Redis shared by every
replica) and `LuaHost` (the same Lua in this process, over a store kept inside Lua,
for standalone mode). Both pass keys and arguments to the script as strings and give
its reply as Redis converts it: an integer (`int`), a bulk or status string (`bytes`),
nil (`None`) or an array (`list`) of those. A script failing (a Lua error, an error
reply) raises `ScriptFailed`; a store that cannot be reached raises `StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from neuronetz_gateway.scripting.script import Script

Reply = int | bytes | None | list["Reply"]
Argument = str | bytes | int


class ScriptError(Exception):
    """The script did not give a reply."""


class ScriptFailed(ScriptError):
    """The script ran and raised an error (or returned an error reply): a bug in the
    script, or a store in trouble (Redis out of memory, a read-only replica)."""


class StoreUnavailable(ScriptError):
    """The store could not be reached; whether the script ran is unknown."""


class ScriptHost(Protocol):
    """Runs scripts atomically: no other script or command runs while one does."""

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Argument],
        *,
        deferred: bool = False,
    ) -> Reply:
        """The script's reply (see the module docstring for its types). `deferred`: the
        caller does not wait on it to answer anybody (a settlement, a release), so a
        remote host may send it together with a later command."""
        ...

    def submit(
        self, script: Script, keys: Sequence[str], args: Sequence[Argument]
    ) -> asyncio.Future[Reply]:
        """`run`, started before this returns: a remote host has queued the command,
        so it goes out in the same write as the next command sent. The future has the
        reply, or the error `run` would raise. For a caller on the hot path that must
        not pay for a task of its own."""
        ...
