"""The query service's node cache: a small, short-lived LRU in front of node reads.

Node reads (``GET /v1/nodes/...`` and a traversal's ``include_nodes`` enrichment) ask again and
again for the same hot nodes (a popular title, the profiles of an active account). The cache keeps
each answer, a node or "not found", for ``ttl_s`` seconds (``RDG_API_NODE_CACHE_TTL_S``, default
1 s) and at most ``max_entries`` answers (``RDG_API_NODE_CACHE_SIZE``), evicting the least recently
used.

Freshness bound: an entry is never served once ``ttl_s`` has passed since it was read from
Cassandra (checked on every lookup with a monotonic clock; an expired entry is dropped, never
served). So a node answer is at most ``ttl_s`` older than Cassandra: a write, a delete, an erasure
or the node's own TTL expiry in Cassandra shows within ``ttl_s`` of it happening. The cache is per
process: with several workers each has its own, and the same bound holds for each. There is no
invalidation message; the short TTL is the invalidation. A blue/green switch of a node type's table
(which the store follows) empties the cache at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

if TYPE_CHECKING:
    from rdg_platform.kv.graph_store import GraphStore, Node

MISSING = object()


class NodeCache:
    """Bounded LRU of ``(node type, id) -> Node | None`` entries that expire ``ttl_s`` after they
    were stored. ``clock`` (default ``time.monotonic``) is injectable for tests. Not thread-safe:
    one per event loop."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic,
                 registry: CollectorRegistry | None = None) -> None:
        if max_entries < 0 or ttl_s < 0:
            raise ValueError(f"max_entries and ttl_s must be >= 0, not {max_entries} and {ttl_s}")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.enabled = max_entries > 0 and ttl_s > 0
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, Node | None]] = OrderedDict()
        self._tables: dict[str, str] = {}  # node type -> the table its entries were read from
        self.hits = 0
        self.misses = 0
        self._hit_c: Counter | None = None
        self._miss_c: Counter | None = None
        if registry is not None:
            self._hit_c = Counter("rdg_api_node_cache_hits", "Node reads answered from the node cache",
                                  registry=registry)
            self._miss_c = Counter("rdg_api_node_cache_misses", "Node reads that went to storage "
                                   "(absent or expired entries)", registry=registry)
            Gauge("rdg_api_node_cache_entries", "Entries in the node cache",
                  registry=registry).set_function(lambda: len(self._entries))
            Gauge("rdg_api_node_cache_hit_ratio", "Hits / (hits + misses) since the process started",
                  registry=registry).set_function(self.hit_ratio)

    def __len__(self) -> int:
        return len(self._entries)

    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def _count(self, hits: int, misses: int) -> None:
        self.hits += hits
        self.misses += misses
        if self._hit_c is not None and hits:
            self._hit_c.inc(hits)
        if self._miss_c is not None and misses:
            self._miss_c.inc(misses)

    def lookup(self, node_type: str, node_id: str) -> object:
        """The cached answer (a Node, or None for "not found"), or :data:`MISSING` when there is no
        live entry. Does not count hits or misses (:meth:`get_many` does)."""
        key = (node_type, node_id)
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        if entry[0] <= self._clock():  # expired: never served
            del self._entries[key]
            return MISSING
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, node_type: str, node_id: str, node: Node | None) -> None:
        """Store an answer read from storage now (``node`` None: not found)."""
        if not self.enabled:
            return
        key = (node_type, node_id)
        self._entries[key] = (self._clock() + self.ttl_s, node)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def get_many(self, store: GraphStore, node_type: str, ids: Sequence[str]) -> dict[str, Node]:
        """``store.aget_nodes`` through the cache: cached answers for live entries, one batch read
        for the rest (whose answers, found or not, are then cached). id -> node, found ones only."""
        if not self.enabled:
            return await store.aget_nodes(node_type, ids)
        table = store.node_table(node_type).fq  # served now; a blue/green switch drops every entry
        if self._tables.get(node_type, table) != table:
            self._entries.clear()
        self._tables[node_type] = table
        uniq = list(dict.fromkeys(ids))
        out: dict[str, Node] = {}
        wanted: list[str] = []
        for i in uniq:
            hit = self.lookup(node_type, i)
            if hit is MISSING:
                wanted.append(i)
            elif hit is not None:
                out[i] = hit  # type: ignore[assignment]
        self._count(len(uniq) - len(wanted), len(wanted))
        if wanted:
            got = await store.aget_nodes(node_type, wanted)
            for i in wanted:
                n = got.get(i)
                self.put(node_type, i, n)
                if n is not None:
                    out[i] = n
        return {i: out[i] for i in uniq if i in out}

    async def get(self, store: GraphStore, node_type: str, node_id: str) -> Node | None:
        """``store.aget_node`` through the cache."""
        return (await self.get_many(store, node_type, [node_id])).get(node_id)
