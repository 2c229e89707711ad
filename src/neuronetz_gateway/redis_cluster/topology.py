"""The cluster's slot map (`CLUSTER SLOTS`) and its redirections (`MOVED`, `ASK`).

A node is named by the address clients reach it at, `(host, port)`. Where a node does not
know its own address (an empty or `?` endpoint), the address the reply came from stands in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import hiredis

from neuronetz_gateway.redis_cluster.slots import SLOT_COUNT

Node = tuple[str, int]


def _host(raw: object, fallback: str) -> str:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return fallback if text in ("", "?") else text


@dataclass(frozen=True, slots=True)
class SlotMap:
    """The master serving each slot (None: no node serves it, the cluster is down there),
    and every master serving at least one slot, each once, in slot order."""

    owners: tuple[Node | None, ...]
    masters: tuple[Node, ...]

    @classmethod
    def of(cls, owners: Sequence[Node | None]) -> SlotMap:
        masters = tuple(dict.fromkeys(node for node in owners if node is not None))
        return cls(tuple(owners), masters)

    def moved(self, slot: int, node: Node) -> SlotMap:
        """The map after a `MOVED` named `node` as the owner of `slot`."""
        owners = list(self.owners)
        owners[slot] = node
        return SlotMap.of(owners)

    @classmethod
    def empty(cls) -> SlotMap:
        return cls.of((None,) * SLOT_COUNT)

    @classmethod
    def parse(cls, reply: object, asked: Node) -> SlotMap:
        """The map from a `CLUSTER SLOTS` reply given by the node at `asked`."""
        if not isinstance(reply, list):
            raise ValueError("CLUSTER SLOTS did not return a list")
        owners: list[Node | None] = [None] * SLOT_COUNT
        for entry in cast(list[Sequence[object]], reply):
            start, end = int(cast(int, entry[0])), int(cast(int, entry[1]))
            master = cast(Sequence[object], entry[2])
            node = (_host(master[0], asked[0]), int(cast(int, master[1])))
            if not 0 <= start <= end < SLOT_COUNT:
                raise ValueError("CLUSTER SLOTS named a slot out of range")
            owners[start : end + 1] = [node] * (end - start + 1)
        return cls.of(owners)


@dataclass(frozen=True, slots=True)
class Redirect:
    """A node's answer that the command belongs elsewhere; nothing was executed."""

    kind: Literal["MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"]
    slot: int = -1
    node: Node | None = None


def redirect_of(reply: object, asked: Node) -> Redirect | None:
    """The redirection `reply` (from the node at `asked`) is, or None for any other reply.

    `MOVED`/`ASK <slot> <host>:<port>` (an empty host: the host asked), `TRYAGAIN` (keys
    of a slot in migration are split between two nodes), `CLUSTERDOWN` (the slot has no
    serving node right now)."""
    if not isinstance(reply, hiredis.ReplyError):
        return None
    text = str(reply)
    kind = text.split(" ", 1)[0]
    if kind in ("MOVED", "ASK"):
        _, slot, endpoint = text.split(" ", 2)
        host, _, port = endpoint.rpartition(":")
        return Redirect(
            cast(Literal["MOVED", "ASK"], kind), int(slot), (_host(host, asked[0]), int(port))
        )
    if kind in ("TRYAGAIN", "CLUSTERDOWN"):
        return Redirect(cast(Literal["TRYAGAIN", "CLUSTERDOWN"], kind))
    return None
