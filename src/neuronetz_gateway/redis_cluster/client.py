"""`ClusterClient`: the gateway's Redis commands on a Redis Cluster (docs/REFERENCE.md §13).

`REDIS_CLUSTER=true` makes `REDIS_URL` a seed: the client asks it (or any node it
knows) for the slot map (`CLUSTER SLOTS`) and keeps one pipelined `RespClient` per
master. Each command goes to the master of its slot (redis_cluster/routing.py); a node's
redirection is followed, never guessed at:
- `MOVED`: the slot has a new owner. The command goes there, and the whole map is read
  again before the next command (a resharding or failover seldom moves one slot alone).
- `ASK`: the slot is migrating and the command's keys are not (all) at its owner any
  more: the command goes once to the importing node, preceded by `ASKING` on the same
  connection (adjacent, nothing of any other caller in between).
- `TRYAGAIN`: a multi-key command (every limiter script) whose keys the migration has
  split between the two nodes. Retried from the owner with a growing pause for up to
  `tryagain_budget_seconds`; after that the node's error is the reply (the limiter then
  fails closed).
- `CLUSTERDOWN`: returned as it is (the caller fails closed); the map is read again.
- A node that does not answer: the command fails (`RespError`) and the map is read
  again, from the other nodes first, so after a failover the next commands go to the
  promoted replica.
A redirection means the node executed nothing, so following it can neither lose nor
double a write. A command whose fate is unknown (no reply in time, a dropped
connection) is never sent again: `RespError`, as on one Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

import hiredis
import structlog

from neuronetz_gateway.redis_cluster.routing import Route, route
from neuronetz_gateway.redis_cluster.topology import Node, Redirect, SlotMap, redirect_of
from neuronetz_gateway.scripting.resp import (
    DEFAULT_TIMEOUT_SECONDS,
    RedisAddress,
    Reply,
    RespClient,
    RespError,
    pack,
    pack_items,
)

log = structlog.get_logger(__name__)

ASKING = pack(("ASKING",))
CLUSTER_SLOTS = ("CLUSTER", "SLOTS")
# MOVED and ASK in a row for one command: more means the nodes disagree with each other.
MAX_REDIRECTS = 5
# TRYAGAIN: a slot's migration moves a few keys per round trip; the limiter's keys of one
# tenant take milliseconds. The pause doubles from the first to the longest.
TRYAGAIN_BUDGET_SECONDS = 2.0
TRYAGAIN_FIRST_PAUSE_SECONDS = 0.005
TRYAGAIN_LONGEST_PAUSE_SECONDS = 0.05
# After a failed map refresh, commands use the map they have for this long before the
# next attempt (so a dead seed does not cost every command a timeout).
REFRESH_RETRY_SECONDS = 1.0
# After a read that found nothing moved, the next one waits this long (a dead master
# fails every command sent to it; each would ask for the map again).
REFRESH_MIN_INTERVAL_SECONDS = 0.1

RedirectHook = Callable[[Redirect], None]


class ClusterClient:
    """`RedisCommands` on a Redis Cluster; see the module docstring for the rules."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        tryagain_budget_seconds: float = TRYAGAIN_BUDGET_SECONDS,
        on_redirect: RedirectHook | None = None,
    ) -> None:
        seed = RedisAddress.from_url(url)
        if seed.path is not None:
            raise ValueError("a Redis Cluster seed is a redis:// or rediss:// URL")
        if seed.db != 0:
            raise ValueError("Redis Cluster has database 0 only")
        parts = urlsplit(url)
        self._scheme = parts.scheme
        self._userinfo = parts.netloc.rpartition("@")[0]
        self._seed: Node = (seed.host, seed.port)
        self._timeout = timeout
        self._tryagain_budget = tryagain_budget_seconds
        self._on_redirect = on_redirect
        self._map = SlotMap.empty()
        self._stale = True
        self._next_refresh = 0.0
        self._refreshing: asyncio.Lock | None = None
        self._suspects: set[Node] = set()
        self._clients: dict[Node, RespClient] = {}

    @property
    def slot_map(self) -> SlotMap:
        """The slot map as this client knows it now."""
        return self._map

    async def execute(self, *args: bytes | str) -> Reply:
        return await self.execute_packed(len(args), pack_items(args))

    async def execute_packed(self, count: int, *parts: bytes, deferred: bool = False) -> Reply:
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        target = route(count, data)
        if target.kind == "masters":
            return await self._on_every_master(count, data)
        return await self._on_owner(count, data, target, deferred)

    def send_packed(self, count: int, *parts: bytes) -> asyncio.Future[Reply] | None:
        """None: a command's node may have to be found first (`execute_packed` does)."""
        return None

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def _on_owner(
        self, count: int, data: bytes, target: Route, deferred: bool = False
    ) -> Reply:
        """Run the command at the owner of its slot, following redirections (which are
        sent at once, `deferred` or not)."""
        loop = asyncio.get_running_loop()
        command = b"*%d\r\n%b" % (count, data)
        node = await self._owner(target)
        asking, redirects, deadline, pause = False, 0, 0.0, TRYAGAIN_FIRST_PAUSE_SECONDS
        while True:
            client = self._client(node)
            try:
                if asking:
                    reply = (await client.execute_adjacent(ASKING, command))[1]
                else:
                    reply = await client.execute_packed(count, data, deferred=deferred)
                deferred = False
            except RespError:
                self._lost(node)
                raise
            redirect = redirect_of(reply, node)
            if redirect is None:
                return reply
            self._report(redirect)
            if redirect.kind == "CLUSTERDOWN":
                self._stale = True
                return reply
            if redirect.kind == "TRYAGAIN":
                deadline = deadline or loop.time() + self._tryagain_budget
                if loop.time() + pause > deadline:
                    return reply
                await asyncio.sleep(pause)  # the migration moves on without telling us
                pause = min(2 * pause, TRYAGAIN_LONGEST_PAUSE_SECONDS)
                node, asking, redirects = await self._owner(target), False, 0
                continue
            redirects += 1
            if redirects > MAX_REDIRECTS or redirect.node is None:
                return reply
            if redirect.kind == "MOVED":
                self._map = self._map.moved(redirect.slot, redirect.node)
                self._stale = True
            node, asking = redirect.node, redirect.kind == "ASK"

    async def _on_every_master(self, count: int, data: bytes) -> Reply:
        """Run the command on every master: the first error reply, else the first reply."""
        await self._fresh_map()
        masters = self._map.masters
        replies = await asyncio.gather(*(self._on_master(node, count, data) for node in masters))
        errors = [reply for reply in replies if isinstance(reply, hiredis.ReplyError)]
        return errors[0] if errors else replies[0]

    async def _on_master(self, node: Node, count: int, data: bytes) -> Reply:
        try:
            return await self._client(node).execute_packed(count, data)
        except RespError:
            self._lost(node)
            raise

    def _lost(self, node: Node) -> None:
        """A node did not answer: it may have failed over, so the map is read again
        (from the other nodes first) before the next command."""
        self._stale = True
        self._suspects.add(node)

    async def _owner(self, target: Route) -> Node:
        await self._fresh_map()
        if target.kind == "any":
            return self._map.masters[0]
        owner = self._map.owners[target.slot]
        if owner is None:
            # No master serves the slot in the map we have: ask the node we would ask
            # anyway; if the cluster really is down there it says CLUSTERDOWN.
            return self._map.masters[0]
        return owner

    async def _fresh_map(self) -> None:
        """Read the slot map if it is stale (at most one reader at a time); raise
        `RespError` if there is no map at all and no node gives one."""
        if not self._stale:
            return
        loop = asyncio.get_running_loop()
        if self._map.masters and loop.time() < self._next_refresh:
            return  # read a moment ago: the map we have serves meanwhile
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            if not self._stale or (self._map.masters and loop.time() < self._next_refresh):
                return
            fresh = await self._read_map()
            if fresh is not None:
                if fresh.owners == self._map.owners:
                    # Nothing moved (a dead master not replaced yet): read it again only
                    # after a pause, not for every command that fails there.
                    self._next_refresh = loop.time() + REFRESH_MIN_INTERVAL_SECONDS
                self._map, self._stale = fresh, False
                self._suspects.clear()
                log.info("redis_cluster_slots_read", masters=len(fresh.masters))
            elif self._map.masters:
                self._next_refresh = loop.time() + REFRESH_RETRY_SECONDS
                log.warning("redis_cluster_slots_unreadable")
            else:
                raise RespError("no Redis Cluster node gave the slot map")

    async def _read_map(self) -> SlotMap | None:
        """The map as the first node to answer sees it: known masters, the seed, and
        last the nodes that did not answer a command."""
        suspects = self._suspects
        healthy = (node for node in (*self._map.masters, self._seed) if node not in suspects)
        for node in dict.fromkeys((*healthy, *suspects)):
            try:
                reply = await self._client(node).execute(*CLUSTER_SLOTS)
                fresh = SlotMap.parse(reply, node)
            except (RespError, ValueError):
                continue
            if fresh.masters:
                return fresh
        return None

    def _client(self, node: Node) -> RespClient:
        client = self._clients.get(node)
        if client is None:
            host = f"[{node[0]}]" if ":" in node[0] else node[0]
            userinfo = f"{self._userinfo}@" if self._userinfo else ""
            url = f"{self._scheme}://{userinfo}{host}:{node[1]}/0"
            client = self._clients[node] = RespClient(url, timeout=self._timeout)
        return client

    def _report(self, redirect: Redirect) -> None:
        if self._on_redirect is not None:
            self._on_redirect(redirect)
        node = f"{redirect.node[0]}:{redirect.node[1]}" if redirect.node else None
        if redirect.kind in ("MOVED", "CLUSTERDOWN"):
            log.info("redis_cluster_redirect", kind=redirect.kind, slot=redirect.slot, node=node)
        else:
            log.debug("redis_cluster_redirect", kind=redirect.kind, slot=redirect.slot, node=node)
