"""A master dies and its replica takes over: after the commands that were at the dead
master fail (closed, never resent), the client reads the slot map from the other nodes
and the next commands reach the promoted replica (docs/REDIS_CLUSTER.md)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from neuronetz_gateway.redis_cluster import ClusterClient, key_slot
from neuronetz_gateway.scripting.resp import RespError
from tests.support import redis_cluster
from tests.support.redis_cluster import RedisClusterNodes


@pytest.fixture
def own_cluster() -> Iterator[RedisClusterNodes]:
    """A cluster of this test alone: it kills one of its masters."""
    if not redis_cluster.available():
        pytest.skip("redis-server / redis-cli not installed")
    nodes = RedisClusterNodes()
    try:
        yield nodes.start()
    finally:
        nodes.stop()


async def test_after_a_failover_commands_reach_the_promoted_replica(
    own_cluster: RedisClusterNodes,
) -> None:
    cluster = own_cluster
    # Not the seed: the map must come from another node after the failure.
    master = cluster.ports[1]
    key = next(
        k
        for k in (f"{{{uuid.uuid4()}}}:f" for _ in range(10_000))
        if cluster.owner(key_slot(k)) == master
    )
    replica = cluster.add_replica(master)
    client = ClusterClient(cluster.url, timeout=0.5)
    try:
        assert await client.execute("SET", key, "1") == b"OK"
        cluster.command(master, "WAIT", 1, 2000)  # the replica has the write
        cluster.kill(master)
        with pytest.raises(RespError):
            await client.execute("INCR", key)  # sent to the dead master: 503 upstream
        cluster.take_over(replica)
        assert await client.execute("INCR", key) == 2
        assert client.slot_map.owners[key_slot(key)] == ("127.0.0.1", replica)
        assert cluster.node(replica).get(key) == "2"
    finally:
        await client.aclose()
