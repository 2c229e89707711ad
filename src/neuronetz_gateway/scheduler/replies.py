"""The replies of the scheduler's scripts (scheduler/lua), decoded: Redis and the
in-process host both answer with bytes or strings, lists and integers."""

from __future__ import annotations

from neuronetz_gateway.scheduler.store import QueueUnavailable
from neuronetz_gateway.scripting import Reply


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pairs(items: object) -> list[tuple[str, str]]:
    values = [text(v) for v in items] if isinstance(items, list) else []
    return list(zip(values[::2], values[1::2], strict=False))


def texts(items: object) -> list[str]:
    return [text(v) for v in items] if isinstance(items, list) else []


def acquired_reply(reply: Reply) -> tuple[bool, str, object, str, bool]:
    """acquire's reply: (granted, server, woken, next expiry, nobody waits there)."""
    if not isinstance(reply, list) or len(reply) != 5:
        raise QueueUnavailable("unexpected reply of acquire")
    granted, server, woken, expiry, quiet = reply
    return granted == 1, text(server), woken, text(expiry), quiet == 1


def dropped_reply(reply: Reply) -> tuple[str, object, list[str], str]:
    """drop's reply: (status, woken, reports, next expiry)."""
    if not isinstance(reply, list) or len(reply) != 4:
        raise QueueUnavailable("unexpected reply of drop")
    status, woken, reports, expiry = reply
    return text(status), woken, texts(reports), text(expiry)
