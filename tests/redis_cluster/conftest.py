"""A real three-master Redis Cluster for the module (tests/support/redis_cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import redis_cluster
from tests.support.redis_cluster import RedisClusterNodes


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterNodes]:
    if not redis_cluster.available():
        pytest.skip("redis-server / redis-cli not installed")
    nodes = RedisClusterNodes()
    try:
        yield nodes.start()
    finally:
        nodes.stop()
