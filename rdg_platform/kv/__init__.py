"""KV layer (Netflix KVDAL semantics) on Cassandra and the graph store built on it."""

from rdg_platform.kv.cluster import ClusterConfig, Credentials, SessionRegistry
from rdg_platform.kv.graph_store import Edge, EdgeCursor, EdgePage, GraphStore, Node, UnknownTypeError
from rdg_platform.kv.schema import ensure_schema
from rdg_platform.kv.store import NODE_ITEM, ItemPage, KVError, KVItem, KVStore, KVWriteError, token_ranges

__all__ = [
    "NODE_ITEM", "ClusterConfig", "Credentials", "Edge", "EdgeCursor", "EdgePage", "GraphStore", "ItemPage",
    "KVError", "KVItem", "KVStore", "KVWriteError", "Node", "SessionRegistry", "UnknownTypeError", "ensure_schema",
    "token_ranges",
]
