"""Which node(s) of a cluster a command goes to, read from the command itself.

Real cluster clients carry a table of every command's key positions; the gateway sends
few kinds of commands, so the rules are short:
- scripts (`EVAL`, `EVALSHA`, `FCALL` and their `_RO` forms): the slot of the first
  declared key (Redis refuses a call whose keys span slots with `CROSSSLOT`); no keys:
  any node;
- node-local administration (`SCRIPT`, `FUNCTION`, `FLUSHDB`, `FLUSHALL`): every master,
  so `SCRIPT LOAD` after a `NOSCRIPT` loads the script wherever a later call may land;
- commands about the connection or the server (`PING`, `INFO`, `CLUSTER`, ...): any node;
- every other command: the slot of its first argument (true of the data commands).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from neuronetz_gateway.redis_cluster.slots import key_slot

_SCRIPTS = frozenset({b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"})
_EVERY_MASTER = frozenset({b"SCRIPT", b"FUNCTION", b"FLUSHDB", b"FLUSHALL"})
_ANY_NODE = frozenset(
    {b"PING", b"ECHO", b"INFO", b"TIME", b"CLUSTER", b"COMMAND", b"HELLO", b"CLIENT", b"LOLWUT"}
)


@dataclass(frozen=True, slots=True)
class Route:
    """Where one command goes: the node of `slot`, every master, or any node."""

    kind: Literal["slot", "masters", "any"]
    slot: int = -1


ANY = Route("any")
MASTERS = Route("masters")


def bulk_strings(data: bytes, count: int) -> list[bytes]:
    """The first `count` bulk strings of packed arguments (fewer if there are fewer)."""
    items: list[bytes] = []
    position, size = 0, len(data)
    while len(items) < count and position < size and data[position] == 0x24:  # "$"
        end = data.index(b"\r\n", position)
        start = end + 2
        stop = start + int(data[position + 1 : end])
        items.append(data[start:stop])
        position = stop + 2
    return items


def route(count: int, data: bytes) -> Route:
    """The route of a command of `count` arguments packed in `data` (no array header)."""
    head = bulk_strings(data, 4)
    if not head:
        return ANY
    name = head[0].upper()
    if name in _SCRIPTS:
        if len(head) == 4 and int(head[2]) > 0:
            return Route("slot", key_slot(head[3]))
        return ANY
    if name in _EVERY_MASTER:
        return MASTERS
    if name in _ANY_NODE or count < 2 or len(head) < 2:
        return ANY
    return Route("slot", key_slot(head[1]))
