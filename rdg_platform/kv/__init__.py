"""KV layer (Netflix KVDAL semantics) on Cassandra and the graph store built on it."""

from rdg_platform.kv.cluster import ClusterConfig, SessionRegistry
from rdg_platform.kv.codec import BadPageTokenError
from rdg_platform.kv.graph_store import EdgePage, GraphStore, UnknownTypeError
from rdg_platform.kv.store import NODE_ITEM, ItemPage, KVError, KVItem, KVStore, KVWriteError, token_ranges

__all__ = [
    "NODE_ITEM", "BadPageTokenError", "ClusterConfig", "EdgePage", "GraphStore", "ItemPage", "KVError",
    "KVItem", "KVStore", "KVWriteError", "SessionRegistry", "UnknownTypeError", "token_ranges",
]
