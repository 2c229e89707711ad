"""The limiter's Lua scripts (limits/lua/), as `Script`s for either script host.

common.lua holds what admit and settle share; it is prepended to both.
"""

from __future__ import annotations

from neuronetz_gateway.scripting import Script

_PACKAGE = "neuronetz_gateway.limits"

ADMIT = Script.load(_PACKAGE, "lua/common.lua", "lua/admit.lua")
SETTLE = Script.load(_PACKAGE, "lua/common.lua", "lua/settle.lua")
REFRESH = Script.load(_PACKAGE, "lua/refresh.lua")
