"""The limiter's Lua scripts, as text ready for `Redis.register_script`.

`register_script` runs them with EVALSHA and loads them again on NOSCRIPT (after a
Redis restart or `SCRIPT FLUSH`), so the hot path pays one round trip per script.
"""

from __future__ import annotations

from importlib import resources


def _read(name: str) -> str:
    source = resources.files("neuronetz_gateway.limits").joinpath("lua", name)
    return source.read_text(encoding="utf-8")


_COMMON = _read("common.lua")

ADMIT = _COMMON + "\n" + _read("admit.lua")
SETTLE = _COMMON + "\n" + _read("settle.lua")
REFRESH = _read("refresh.lua")
