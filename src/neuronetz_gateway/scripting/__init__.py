"""Lua scripts on Redis or in this process: one text, two hosts (docs/SCRIPTING.md).

    SCRIPT = Script.load("neuronetz_gateway.limits", "lua/common.lua", "lua/admit.lua")
    host: ScriptHost = RedisHost(RespClient(url)) if url else LuaHost()
    reply = await host.run(SCRIPT, keys, args)

Nothing here knows what a script does; callers parse replies in their own typed code.
"""

from neuronetz_gateway.scripting.host import (
    Argument,
    Reply,
    ScriptError,
    ScriptFailed,
    ScriptHost,
    StoreUnavailable,
)
from neuronetz_gateway.scripting.lua_host import LuaHost
from neuronetz_gateway.scripting.redis_host import RedisHost
from neuronetz_gateway.scripting.resp import RespClient, RespError
from neuronetz_gateway.scripting.script import Script

__all__ = [
    "Argument",
    "LuaHost",
    "RedisHost",
    "Reply",
    "RespClient",
    "RespError",
    "Script",
    "ScriptError",
    "ScriptFailed",
    "ScriptHost",
    "StoreUnavailable",
]
