"""Redis Cluster support: `REDIS_CLUSTER=true` (docs/REFERENCE.md §13, docs/REDIS_CLUSTER.md)."""

from neuronetz_gateway.redis_cluster.client import ClusterClient
from neuronetz_gateway.redis_cluster.commands import RedisCommands
from neuronetz_gateway.redis_cluster.slots import SLOT_COUNT, key_slot

__all__ = ["SLOT_COUNT", "ClusterClient", "RedisCommands", "key_slot"]
