"""GraphStore: the property graph on the KV layer (nodes, adjacency lists, reverse adjacency lists).

Storage only: it answers with typed :class:`Node` / :class:`Edge` values and adjacency rows, and
pages with typed :class:`EdgeCursor` values; the HTTP shapes (JSON objects, opaque page tokens,
request validation) belong to :mod:`rdg_platform.serving`. Tables are created by
:func:`rdg_platform.kv.schema.ensure_schema`, never as a side effect of a read or write.

Layout (see :mod:`rdg_platform.kv.store`): a node is record ``id`` with the one item ``NODE_ITEM``;
an edge ``src -> dst`` is item ``dst`` of record ``src`` in the edge's table AND item ``src`` of record
``dst`` in its ``<table>_in`` reverse table, both written with the same event-time timestamp, so
``direction=in`` is one single-partition lookup and the two sides converge under retries/replays.

Reads are written once as *plans*: generators that yield the next batch of (statement, params) and
receive the rows. A blocking runner (``session.execute``) and an asyncio runner (driver futures
bridged into the event loop) drive the same plan, so the HTTP service and the Python API cannot
drift apart.

order=LATEST (newest first) vs item_key = dst (clustering order is by id, not time): the trade-off
chosen is *read, then select*. The first page (``limit+1`` rows, at least 128) is read with
properties; most adjacency lists (bounded by the namespace TTL, default 100 days) fit in it and cost
exactly one round trip. Only when the list is longer are the remaining keys read as light
``(item_key, updated_at)`` pages of up to 5000 rows, the newest ``limit`` are chosen in memory, and
their properties fetched with one single-partition ``IN`` on the clustering key. Cost is
O(list length) for LATEST on huge lists; the alternative (a time-ordered secondary table) would need
read-before-write or ever-growing index rows to stay LWW-correct, which costs every write instead of
rare long reads. order=ANY reads in key order and stops as soon as ``limit`` edges pass the filter.
``since`` filters on ``updated_at`` (the newest event time of the edge).

Many partitions at once (a traversal level, a batch node get): one multi-partition ``IN`` per group
of keys that share a replica set, with ``PER PARTITION LIMIT``, instead of one request per key. In a
Python client the per-request cost (driver encode/decode, IO-thread hand-off, event-loop wake-up)
dominates small reads, so a frontier goes out as a few multi-key requests, not one per node. Grouping by replica set keeps the usual objection to
``IN`` (one coordinator fanning out to many replicas) away: every key of a request lives on the
replicas the request is routed to (its routing key is set to one of its keys), so the coordinator
reads locally, and a node failure fails over like any token-aware request. A partition whose list
did not fit the per-partition limit is re-read on its own with the exact single-partition plan.

Blue/green namespace versions: the physical tables come from
:class:`rdg_platform.kv.versions.ActiveTables`, which follows the pointer table (the entry points pass
``RDG_CASSANDRA_NAMESPACE_REFRESH_S`` as ``version_refresh_s``). Every call takes one snapshot of the
type -> table map, so it uses either the old or the new version, never a mix, and the query service
and sinks follow a Spark rebuild's switch-over with no restart and no downtime.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import logging
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cassandra.query import UNSET_VALUE, BoundStatement, PreparedStatement

from rdg_platform.kv.cluster import await_response
from rdg_platform.kv.codec import decode_props, encode_blob, encode_props, merge_props
from rdg_platform.kv.fence import ErasureFence, edge_endpoints, fence_places
from rdg_platform.kv.schema import ensure_schema, latest_index_table
from rdg_platform.kv.store import MAX_PAGE, NODE_ITEM, KVStore, Table
from rdg_platform.kv.versions import ActiveTables
from rdg_platform.model.mapping import GraphRecord
from rdg_platform.model.spec import GraphSpec, Namespace

if TYPE_CHECKING:
    from rdg_platform.settings import CassandraSettings, ErasureSettings

log = logging.getLogger(__name__)

Direction = Literal["out", "in"]
Order = Literal["latest", "any"]
# (table, CQL template, bound values) or, for a multi-partition read, the same plus the routing key
# (one of its partition keys, serialised) so the request goes to the replicas that own all its keys.
Query = tuple[Table, str, tuple[Any, ...]] | tuple[Table, str, tuple[Any, ...], bytes | None]
Plan = Generator[list[Query], list[list[Any]], Any]

MAX_EDGE_LIMIT = 10_000
MULTI_KEYS = 64  # partition keys per multi-partition IN request
MULTI_ROWS = 20_000  # and at most about this many rows per response (keys x per-partition limit)
_KEY_PAGE = MAX_PAGE
DEFAULT_VERSION_REFRESH_S = 5.0
# Lists an order=latest read found longer than one page (with a newest-first index) are remembered for
# LONG_LIST_TTL_S, so the next read of a popular supernode goes straight to the index instead of
# reading (and discarding) the list's first page again. The index answers lists of any length
# correctly, so a stale hint (a list that shrank) costs nothing but the hint itself.
LONG_LIST_HINTS = 10_000
LONG_LIST_TTL_S = 300.0
# Rows of one adjacency list: (the other end's id, updated_at, properties: raw map or decoded dict).
AdjacencyRow = tuple[str, int, Any]


def _raw_props(raw: Any) -> Any:
    return raw


class _FromSettings:
    """Marker: take ``version_refresh_s`` from the Cassandra settings (or the default without them)."""


FROM_SETTINGS = _FromSettings()


class UnknownTypeError(KeyError):
    """A node or edge type the spec does not define."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Node:
    """A node as stored: its properties (decoded) and the event time of its latest update (ms)."""

    type: str
    id: str
    properties: dict[str, Any]
    updated_at: int


@dataclass(frozen=True, slots=True)
class Edge:
    """An edge as stored, whichever side (forward or reverse table) it was read from."""

    type: str
    src: str
    dst: str
    properties: Any  # the decoded dict, or the raw stored map when read with decode=False
    updated_at: int


@dataclass(frozen=True, slots=True)
class EdgeCursor:
    """Where the next page of an adjacency list starts: after item ``key`` (order=any), or after
    (``updated_at``, ``key``) in newest-first order (order=latest)."""

    key: str
    updated_at: int | None = None


@dataclass(frozen=True, slots=True)
class EdgePage:
    edges: list[Edge]
    next_cursor: EdgeCursor | None


@dataclass(frozen=True, slots=True)
class RowPage:
    """:class:`EdgePage` before the edges are built: adjacency rows of one node."""

    rows: list[AdjacencyRow]
    next_cursor: EdgeCursor | None


def _check_order(order: str) -> Order:
    if order not in ("latest", "any"):
        raise ValueError(f"order must be latest or any, not {order!r}")
    return order  # type: ignore[return-value]


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_EDGE_LIMIT:
        raise ValueError(f"limit must be in 1..{MAX_EDGE_LIMIT}")


class GraphStore:
    """Upserts graph records and answers node / adjacency reads. Thread-safe; one per process."""

    _NODE_Q = "SELECT updated_at, props, pb FROM {t} WHERE record_id = ? AND item_key = ?"
    _EDGE_FIRST = "SELECT item_key, updated_at, props, pb FROM {t} WHERE record_id = ? LIMIT ?"
    _EDGE_AFTER = "SELECT item_key, updated_at, props, pb FROM {t} WHERE record_id = ? AND item_key > ? LIMIT ?"
    _KEYS_AFTER = "SELECT item_key, updated_at FROM {t} WHERE record_id = ? AND item_key > ? LIMIT ?"
    _EDGE_IN = "SELECT item_key, updated_at, props, pb FROM {t} WHERE record_id = ? AND item_key IN ?"
    _EDGES_MULTI = ("SELECT record_id, item_key, updated_at, props, pb FROM {t} WHERE record_id IN ? "
                    "PER PARTITION LIMIT ?")
    _NODES_MULTI = "SELECT record_id, updated_at, props, pb FROM {t} WHERE record_id IN ? AND item_key = ?"
    # Latest-index rows carry the write's properties like the adjacency row (INSERT: the row exists
    # even for an edge without properties; every write to one index row has the same timestamp).
    _IDX_WRITE = ("INSERT INTO {t} (record_id, updated_at, item_key, props) VALUES (?, ?, ?, ?) "
                  "USING TIMESTAMP ? AND TTL ?")
    _IDX_WRITE_FULL = ("INSERT INTO {t} (record_id, updated_at, item_key, pb) VALUES (?, ?, ?, ?) "
                       "USING TIMESTAMP ? AND TTL ?")
    _IDX_FIRST = "SELECT updated_at, item_key, props, pb FROM {t} WHERE record_id = ? LIMIT ?"
    _IDX_OF_KEY = ("SELECT updated_at FROM {t} WHERE record_id = ? AND item_key = ? ALLOW FILTERING")
    _IDX_DELETE = "DELETE FROM {t} USING TIMESTAMP ? WHERE record_id = ? AND updated_at = ? AND item_key = ?"

    def __init__(self, spec: GraphSpec, kv: KVStore, version_refresh_s: float | None = DEFAULT_VERSION_REFRESH_S,
                 fence: ErasureFence | None = None) -> None:
        """``spec`` names the base (version 0) tables; ``version_refresh_s`` is how stale the
        blue/green pointer may get (None: never read it, always use the spec's tables). Namespaces
        the spec pins to a version (table ``<base>_v<N>``) never follow the pointer. ``fence``: the
        erasure fence every :meth:`write` passes its records through (writers; None for readers)."""
        self.spec = spec
        self.kv = kv
        self.fence = fence
        self.tables = ActiveTables(spec, kv, version_refresh_s)
        # The property set of a full write per type (it goes to the blob column, see kv.codec).
        self._full_nodes = {n: frozenset(t.properties) for n, t in spec.nodes.items()}
        self._full_edges = {e: frozenset(t.properties) for e, t in spec.edges.items()}
        self._index: dict[Table, tuple[Table | None, float]] = {}  # adjacency table -> its latest index
        self._long_lists: dict[tuple[Table, str], float] = {}  # (table, node) -> hint expiry (monotonic)

    @classmethod
    def from_spec(cls, spec: GraphSpec, cassandra: CassandraSettings | None = None, *, concurrency: int = 128,
                  version_refresh_s: float | None | _FromSettings = FROM_SETTINGS,
                  erasure: ErasureSettings | None = None, on_fenced: Callable[[GraphRecord], None] | None = None,
                  **cluster_overrides: Any) -> GraphStore:
        """A store on the spec's clusters (contact points, port and data centre are in the spec),
        logging in with ``cassandra``'s credentials and CA; ``version_refresh_s`` defaults to its
        ``namespace_refresh_s``. Connections open lazily (first query), so this never blocks or fails.

        Writers pass ``erasure`` (the erasure settings): their writes then honour the erasure fence
        (:mod:`rdg_platform.kv.fence`; ``on_fenced`` sees each dropped record). Raises
        :class:`rdg_platform.kv.fence.FenceKeyMissing` when those settings carry no fence key."""
        if isinstance(version_refresh_s, _FromSettings):
            refresh = DEFAULT_VERSION_REFRESH_S if cassandra is None else cassandra.namespace_refresh_s
        else:
            refresh = version_refresh_s
        if refresh is not None and refresh < 0:
            raise ValueError(f"version_refresh_s must be >= 0 or None, not {refresh}")
        kv = KVStore.from_spec(spec, cassandra, concurrency, **cluster_overrides)
        fence = None
        if erasure is not None:
            key = erasure.fence_key.get_secret_value().encode() if erasure.fence_key is not None else b""
            fence = ErasureFence(key, fence_places(spec, kv.cluster_session), edge_endpoints(spec),
                                 refresh_s=erasure.fence_refresh_s, ttl_s=erasure.fence_ttl_s, on_fenced=on_fenced)
        return cls(spec, kv, refresh, fence)

    def ensure_schema(self) -> None:
        """:func:`rdg_platform.kv.schema.ensure_schema` for this store's spec, then resolve versions
        (for provisioning entry points and tests that build a store anyway)."""
        ensure_schema(self.kv, self.spec)
        if self.version_refresh_s is not None:
            self.refresh_versions()

    def ping(self) -> dict[str, str]:
        """One cheap read per cluster (``system.local``): proves Cassandra answers; raises the
        driver's error when it does not. Cluster -> Cassandra release version."""
        return self.kv.ping()

    def close(self) -> None:
        self.kv.close()

    # ------------------------------------------------------------------ versions
    @property
    def version_refresh_s(self) -> float | None:
        return self.tables.refresh_s

    def active_namespaces(self) -> Mapping[str, Namespace]:
        """Namespace name -> the namespace as currently served (its tables follow the pointer)."""
        return self.tables.current().namespaces

    def refresh_versions(self) -> bool:
        """Read the blue/green pointers now and switch tables if any changed (returns whether)."""
        return self.tables.refresh()

    # ------------------------------------------------------------------ types
    def node_table(self, node_type: str) -> Table:
        tables = self.tables.current().nodes
        try:
            return tables[node_type]
        except KeyError:
            raise UnknownTypeError(f"unknown node type {node_type!r} (known: {sorted(tables)})") from None

    def _edge_pair(self, edge_type: str) -> tuple[Table, Table]:
        tables = self.tables.current().edges
        try:
            return tables[edge_type]
        except KeyError:
            raise UnknownTypeError(f"unknown edge type {edge_type!r} (known: {sorted(tables)})") from None

    def edge_table(self, edge_type: str, direction: Direction = "out") -> Table:
        fwd, rev = self._edge_pair(edge_type)
        if direction not in ("out", "in"):
            raise ValueError(f"direction must be out or in, not {direction!r}")
        return fwd if direction == "out" else rev

    # ------------------------------------------------------------------ writes
    def write(self, records: Sequence[GraphRecord]) -> Sequence[GraphRecord]:
        """Upsert records concurrently; returns, once Cassandra acknowledged every write, the records
        written (all of them, except those the erasure fence dropped).

        Raises :class:`rdg_platform.kv.store.KVWriteError` (or UnknownTypeError for a type the spec
        lacks) — the caller retries the whole call, which is safe because writes are idempotent.
        """
        if self.fence is not None:
            records = self.fence.admit(records)
        writes: list[tuple[Table, str, tuple[Any, ...]]] = []
        append = writes.append
        tables = self.tables.current()  # one snapshot for the whole call: all of it goes to one version
        node_tables, edge_tables = tables.nodes, tables.edges
        full_nodes, full_edges = self._full_nodes, self._full_edges
        partial, full = KVStore.UPSERT, KVStore.UPSERT_FULL
        idx_partial, idx_full = self._IDX_WRITE, self._IDX_WRITE_FULL
        for r in records:
            # Hot path (the sink and bulk loads): encode the properties once per record, reuse
            # the encoding for both sides of an edge, build bound tuples inline. A record carrying
            # every property of its type is a full write (one blob), any other a partial one (map).
            p = r.properties
            ts = r.updated_at
            if r.kind == "node":
                t = node_tables.get(r.type) or self.node_table(r.type)
                if p and p.keys() == full_nodes.get(r.type) and None not in p.values():
                    append((t, full, (ts * 1000, t.namespace.ttl_s, encode_blob(p), UNSET_VALUE, ts, r.id,
                                      NODE_ITEM)))
                else:
                    append((t, partial, (ts * 1000, t.namespace.ttl_s, encode_props(p) if p else UNSET_VALUE,
                                         UNSET_VALUE, ts, r.id, NODE_ITEM)))
            else:
                fwd, rev = edge_tables.get(r.type) or self._edge_pair(r.type)
                dst = r.dst
                if not dst:
                    raise ValueError(f"edge record {r.type}/{r.id} has no dst")
                ttl = fwd.namespace.ttl_s
                enc: Any
                if p and p.keys() == full_edges.get(r.type) and None not in p.values():
                    cql, idx_cql, enc = full, idx_full, encode_blob(p)
                else:
                    cql, idx_cql, enc = partial, idx_partial, encode_props(p) if p else UNSET_VALUE
                append((fwd, cql, (ts * 1000, ttl, enc, UNSET_VALUE, ts, r.id, dst)))
                append((rev, cql, (ts * 1000, ttl, enc, UNSET_VALUE, ts, dst, r.id)))
                fi, ri = self.latest_index(fwd), self.latest_index(rev)
                if fi is not None:
                    append((fi, idx_cql, (r.id, ts, dst, enc, ts * 1000, ttl)))
                if ri is not None:
                    append((ri, idx_cql, (dst, ts, r.id, enc, ts * 1000, ttl)))
        self.kv.execute_statements(writes)
        return records

    def latest_index(self, t: Table) -> Table | None:
        """The newest-first index of adjacency table ``t`` (see :mod:`rdg_platform.kv.schema`), None
        when the table has none. From the driver's schema metadata (no request); an absence is
        re-checked every 30 s, so a process started before the schema picks the index up."""
        hit = self._index.get(t)
        now = time.monotonic()
        if hit is not None and (hit[0] is not None or now < hit[1]):
            return hit[0]
        name = latest_index_table(t.name)
        found: Table | None = None
        if name is not None:
            try:
                ks = self.kv.session(t).cluster.metadata.keyspaces.get(t.keyspace)
            except Exception:  # not connected yet: the next call looks again
                ks = None
            if ks is not None and name in ks.tables:
                found = Table(t.namespace, t.cluster, t.keyspace, name)
        self._index[t] = (found, now + 30.0)
        return found

    def delete_edge(self, edge_type: str, src: str, dst: str, event_time_ms: int | None = None) -> None:
        """Delete both sides of an edge as of ``event_time_ms`` (newer writes survive), in the
        active version's tables."""
        fwd, rev = self._edge_pair(edge_type)
        ts = event_time_ms or int(time.time() * 1000)
        self._delete_index_entries(fwd, [(src, dst)], ts)
        self._delete_index_entries(rev, [(dst, src)], ts)
        self.kv.delete_table_items(fwd, src, [dst], ts)
        self.kv.delete_table_items(rev, dst, [src], ts)

    def _delete_index_entries(self, t: Table, cells: Sequence[tuple[str, str]], event_time_ms: int) -> None:
        """Delete the latest-index entries of ``(record_id, item_key)`` items of adjacency table ``t``
        as of ``event_time_ms`` (entries of later writes survive, like the rows). An item's entries
        are found by a filtered read of its record's index partition (the index is clustered by
        time): rare deletions pay for it, so writes never read."""
        idx = self.latest_index(t)
        if idx is None:
            return
        session = self.kv.session(idx)
        find = self.kv.prepare(idx, self._IDX_OF_KEY)
        delete = self.kv.prepare(idx, self._IDX_DELETE)
        stmts = [(delete, (event_time_ms * 1000, rid, r[0], key))
                 for rid, key in cells for r in session.execute(find, (rid, key))]
        self.kv._run(session, stmts)

    def delete_node(self, node_type: str, node_id: str, event_time_ms: int) -> None:
        """Delete a node's record (its properties) as of ``event_time_ms``, in the active version's
        table: a partition tombstone, so no write with an older or equal event time is visible again."""
        self.kv.delete_table_items(self.node_table(node_type), node_id, None, event_time_ms)

    def delete_adjacency(self, edge_type: str, node_id: str, direction: Direction, event_time_ms: int,
                         chunk: int = 1000) -> int:
        """Delete every ``edge_type`` edge of ``node_id`` on one side (``out``: its out-edges, ``in``:
        its in-edges) from both tables, as of ``event_time_ms``; returns how many edges were deleted.

        The list on ``direction``'s side is read, each edge's mirror item on the other side deleted,
        and only then the list itself (one partition tombstone), so an interrupted call leaves the
        remaining edges discoverable and a rerun finishes the job; deleting again is harmless."""
        near = self.edge_table(edge_type, direction)
        far = self.edge_table(edge_type, "in" if direction == "out" else "out")
        n = 0
        batch: list[tuple[str, str]] = []
        for other in self.kv.item_keys(near, node_id):
            batch.append((other, node_id))
            if len(batch) >= chunk:
                self._delete_index_entries(far, batch, event_time_ms)
                self.kv.delete_table_cells(far, batch, event_time_ms)
                n += len(batch)
                batch = []
        if batch:
            self._delete_index_entries(far, batch, event_time_ms)
            self.kv.delete_table_cells(far, batch, event_time_ms)
            n += len(batch)
        near_idx = self.latest_index(near)
        if near_idx is not None:
            self.kv.delete_table_items(near_idx, node_id, None, event_time_ms)
        self.kv.delete_table_items(near, node_id, None, event_time_ms)
        return n

    # ------------------------------------------------------------------ plans
    def _replica_groups(self, t: Table, ids: Sequence[str], per_request: int) -> list[tuple[bytes | None, list[str]]]:
        """``ids`` as requests of at most ``per_request`` keys sharing a replica set (see
        :func:`group_by_replicas`); no routing keys on a one-node cluster, which holds every key."""
        meta = self.kv.session(t).cluster.metadata
        if len(meta.all_hosts()) <= 1:
            return [(None, list(ids[i:i + per_request])) for i in range(0, len(ids), per_request)]

        def replicas(key: bytes) -> list[str]:
            return [str(h.endpoint) for h in meta.get_replicas(t.keyspace, key)]

        return group_by_replicas(ids, replicas, per_request)

    def _node_plan(self, node_type: str, ids: Sequence[str]) -> Plan:
        t = self.node_table(node_type)
        uniq = list(dict.fromkeys(ids))
        out: dict[str, Node] = {}
        if len(uniq) == 1:
            rows = (yield [(t, self._NODE_Q, (uniq[0], NODE_ITEM))])[0]
            if rows:
                upd, props, pb = rows[0]
                out[uniq[0]] = Node(node_type, uniq[0], merge_props(props, pb), upd or 0)
            return out
        results = yield [(t, self._NODES_MULTI, (chunk, NODE_ITEM), rk)
                         for rk, chunk in self._replica_groups(t, uniq, MULTI_KEYS)]
        found: dict[str, tuple[Any, Any, Any]] = {}
        for rows in results:
            for nid, upd, props, pb in rows:
                found[nid] = (upd, props, pb)
        for nid in uniq:  # in request order
            hit = found.get(nid)
            if hit is not None:
                out[nid] = Node(node_type, nid, merge_props(hit[1], hit[2]), hit[0] or 0)
        return out

    def _adjacency_plan(self, edge_type: str, node_ids: Sequence[str], direction: Direction, limit: int,
                        since_ms: int | None, order: Order, sort: bool = True,
                        skipped: set[str] | None = None) -> Plan:
        """Edges of many nodes at once, read with multi-partition ``IN`` requests grouped by replica
        set: node id -> rows ``(neighbour id, updated_at, raw properties)``, the same edges as the
        first page of :meth:`edges` gives for that node. ``sort=False`` leaves a LATEST list that was
        not cut to ``limit`` in key order (a traversal sorts the whole level once instead).
        ``skipped`` (when given) collects the ids of nodes some of whose edges read were older
        than ``since_ms`` and left out (a traversal reports them as cut by its lookback)."""
        _check_limit(limit)
        t = self.edge_table(edge_type, direction)
        uniq = list(dict.fromkeys(node_ids))
        since = since_ms or 0
        if order == "latest":
            page = min(max(limit, 128), MAX_PAGE)
        else:
            page = min(limit if not since else max(limit, 256), MAX_PAGE)
        per_request = max(1, min(MULTI_KEYS, MULTI_ROWS // page))
        results = yield [(t, self._EDGES_MULTI, (chunk, page), rk)
                         for rk, chunk in self._replica_groups(t, uniq, per_request)]
        by_id: dict[str, list[AdjacencyRow]] = {}
        for rows in results:
            for rid, key, upd, props, pb in rows:
                lst = by_id.get(rid)
                if lst is None:
                    by_id[rid] = lst = []
                lst.append((key, upd or 0, (props, pb)))
        out: dict[str, list[AdjacencyRow]] = {}
        again: list[str] = []
        for nid in uniq:
            cand = by_id.get(nid, [])
            kept = [c for c in cand if c[1] >= since] if since else cand
            if skipped is not None and len(kept) < len(cand):
                skipped.add(nid)
            if len(cand) >= page and (order == "latest" or len(kept) < limit):
                again.append(nid)  # the list goes on past the page: read it exactly, on its own
                continue
            if order == "any":
                del kept[limit:]
            elif len(kept) > limit or (sort and len(kept) > 1):
                kept = heapq.nsmallest(limit, kept, key=_newest_first)
            out[nid] = kept
        if again:
            pages = yield from _parallel([self._rows_plan(edge_type, nid, direction, limit, since_ms, order,
                                                          None, False, skipped) for nid in again])
            for nid, pg in zip(again, pages, strict=True):
                out[nid] = pg.rows
        return {nid: out[nid] for nid in uniq}

    def _rows_plan(self, edge_type: str, node_id: str, direction: Direction, limit: int,
                   since_ms: int | None, order: Order, after: EdgeCursor | None, want_cursor: bool = True,
                   skipped: set[str] | None = None) -> Plan:
        """One page of ``node_id``'s adjacency list as a :class:`RowPage` (raw properties);
        ``skipped`` as in :meth:`_adjacency_plan`."""
        _check_limit(limit)
        t = self.edge_table(edge_type, direction)
        since = since_ms or 0
        extra = 1 if want_cursor else 0
        picked: list[Any]
        next_cursor: EdgeCursor | None
        if order == "any":
            cursor = after.key if after is not None else None
            page = min(limit + extra if not since else max(limit + extra, 256), MAX_PAGE)
            picked = []
            while True:
                if cursor is None:
                    rows = (yield [(t, self._EDGE_FIRST, (node_id, page))])[0]
                else:
                    rows = (yield [(t, self._EDGE_AFTER, (node_id, cursor, page))])[0]
                for row in rows:
                    if (row[1] or 0) >= since:
                        picked.append(row)
                        if len(picked) >= limit + extra:
                            break
                    elif skipped is not None:
                        skipped.add(node_id)
                if len(picked) >= limit + extra or len(rows) < page:
                    break
                cursor = rows[-1][0]
            more = len(picked) > limit
            picked = picked[:limit]
            next_cursor = EdgeCursor(picked[-1][0]) if (more and picked) else None
        else:
            cur_ts: int | None = None
            cur_key = ""
            if after is not None:
                if after.updated_at is None:
                    raise ValueError("an order=latest cursor needs updated_at")
                cur_ts, cur_key = after.updated_at, after.key
            page = min(max(limit + extra, 128), MAX_PAGE)
            hinted = self.latest_index(t) if self._is_long_list(t, node_id) else None
            if hinted is not None:  # known to be long: straight to the head of its index
                return (yield from self._latest_index_plan(t, hinted, node_id, limit, extra, since,
                                                           after if cur_ts is not None else None, skipped))
            first = (yield [(t, self._EDGE_FIRST, (node_id, page))])[0]
            cand: list[tuple[str, int]] = [(r[0], r[1] or 0) for r in first]
            full = {r[0]: r for r in first}
            idx = self.latest_index(t) if len(first) == page else None
            if idx is not None:  # a long list with a newest-first index: read only its head
                self._mark_long_list(t, node_id)
                return (yield from self._latest_index_plan(t, idx, node_id, limit, extra, since,
                                                           after if cur_ts is not None else None, skipped))
            if len(first) == page:  # the list is longer than one page: read the rest key-only
                last = first[-1][0]
                while True:
                    rows = (yield [(t, self._KEYS_AFTER, (node_id, last, _KEY_PAGE))])[0]
                    cand.extend((r[0], r[1] or 0) for r in rows)
                    if len(rows) < _KEY_PAGE:
                        break
                    last = rows[-1][0]

            def after_cursor(c: tuple[str, int]) -> bool:
                if cur_ts is None:
                    return True
                return c[1] < cur_ts or (c[1] == cur_ts and c[0] > cur_key)

            ok = [c for c in cand if c[1] >= since and after_cursor(c)]
            if skipped is not None and since and any(c[1] < since for c in cand):
                skipped.add(node_id)
            top = heapq.nsmallest(limit + extra, ok, key=lambda c: (-c[1], c[0]))
            missing = [k for k, _ in top if k not in full]
            if missing:
                chunks = [missing[i:i + 100] for i in range(0, len(missing), 100)]
                res = yield [(t, self._EDGE_IN, (node_id, ch)) for ch in chunks]
                for rows in res:
                    for r in rows:
                        full[r[0]] = r
            more = len(top) > limit
            top = top[:limit]
            picked = [full[k] for k, _ in top if k in full]
            next_cursor = EdgeCursor(top[-1][0], top[-1][1]) if (more and top) else None
        return RowPage([(r[0], r[1] or 0, (r[2], r[3])) for r in picked], next_cursor)

    def _is_long_list(self, t: Table, node_id: str) -> bool:
        expiry = self._long_lists.get((t, node_id))
        return expiry is not None and expiry > time.monotonic()

    def _mark_long_list(self, t: Table, node_id: str) -> None:
        hints = self._long_lists
        if len(hints) >= LONG_LIST_HINTS:
            hints.clear()  # bounded: a burst of new supernodes starts the hints over
        hints[(t, node_id)] = time.monotonic() + LONG_LIST_TTL_S

    _IDX_AT_AFTER = ("SELECT updated_at, item_key, props, pb FROM {t} WHERE record_id = ? AND updated_at = ? "
                     "AND item_key > ? LIMIT ?")
    _IDX_BEFORE = "SELECT updated_at, item_key, props, pb FROM {t} WHERE record_id = ? AND updated_at < ? LIMIT ?"

    def _latest_index_plan(self, t: Table, idx: Table, node_id: str, limit: int, extra: int, since: int,
                           after: EdgeCursor | None, skipped: set[str] | None) -> Plan:
        """order=latest of a long list through its newest-first index: read index entries newest
        first, keep each key's first (newest) entry and stop as soon as ``limit`` (+ ``extra``)
        edges are in hand or the entries fall behind ``since``. An entry written by a full write
        holds the edge's whole state as of its time (nothing newer exists, or a newer entry would
        have come first), so it is the answer as is. An entry of a partial write holds only the
        properties it wrote: that edge is read from the adjacency row (one ``IN`` on the clustering
        key), and counts only if the row still has exactly that ``updated_at``; on pages after a
        cursor every entry is confirmed that way. Older entries of a
        re-written edge are skipped by the newest-first order, so the index needs no read-before-write."""
        want = limit + extra
        page = min(max(want + want // 4, 32), MAX_PAGE)
        seen: set[str] = set()
        picked: list[Any] = []
        pos: tuple[int, str] | None = (after.updated_at or 0, after.key) if after is not None else None
        done = False
        # A page after a cursor has not seen the entries before it, so a stale entry (of an edge
        # re-written later) can be its first sight of a key: every entry is confirmed by its row there.
        trust_full = after is None
        while len(picked) < want and not done:
            if pos is None:
                pages = yield [(idx, self._IDX_FIRST, (node_id, page))]
            else:
                pages = yield [(idx, self._IDX_AT_AFTER, (node_id, pos[0], pos[1], page)),
                               (idx, self._IDX_BEFORE, (node_id, pos[0], page))]
            entries = [r for rows in pages for r in rows]
            done = all(len(rows) < page for rows in pages)
            if len(pages) == 2 and len(pages[0]) == page:  # more at this very timestamp: page it first
                entries, done = list(pages[0]), False
            new: list[Any] = []  # (key, updated_at, props, pb), newest first
            for r in entries:
                key = r[1]
                if key in seen:
                    continue
                seen.add(key)
                if (r[0] or 0) < since:
                    if skipped is not None:
                        skipped.add(node_id)
                    done = True
                    break
                new.append((key, r[0] or 0, r[2], r[3]))
            if entries:
                pos = (entries[-1][0] or 0, entries[-1][1])
            partial = [c[0] for c in new if c[3] is None or not trust_full]
            rows_by_key: dict[str, Any] = {}
            if partial:
                res = yield [(t, self._EDGE_IN, (node_id, partial[i:i + 100])) for i in range(0, len(partial), 100)]
                rows_by_key = {r[0]: r for rows in res for r in rows}
            for c in new:
                if c[3] is None or not trust_full:
                    r = rows_by_key.get(c[0])
                    if r is None or (r[1] or 0) != c[1]:
                        continue  # deleted since, or a newer write is on its way to the index
                    c = r
                picked.append(c)
                if len(picked) >= want:
                    break
        more = len(picked) > limit
        picked = picked[:limit]
        nxt = EdgeCursor(picked[-1][0], picked[-1][1] or 0) if (more and picked) else None
        return RowPage([(r[0], r[1] or 0, (r[2], r[3])) for r in picked], nxt)

    # ------------------------------------------------------------------ runners
    def _statement(self, q: Query) -> BoundStatement:
        ps = self.kv.prepare(q[0], q[1])
        if len(q) > 3 and q[3] is not None:
            return _RoutedStatement(ps, q[2], q[3])
        return ps.bind(q[2])

    def _run_sync(self, plan: Plan) -> Any:
        try:
            batch = next(plan)
            while True:
                results = [list(self.kv.session(q[0]).execute(self._statement(q))) for q in batch]
                batch = plan.send(results)
        except StopIteration as stop:
            return stop.value

    async def _run_async(self, plan: Plan) -> Any:
        try:
            batch = next(plan)
            while True:
                futs = [await_response(self.kv.session(q[0]).execute_async(self._statement(q))) for q in batch]
                results = list(await asyncio.gather(*futs)) if len(futs) != 1 else [await futs[0]]
                batch = plan.send(results)
        except StopIteration as stop:
            return stop.value

    # ------------------------------------------------------------------ public reads
    def get_node(self, node_type: str, node_id: str) -> Node | None:
        """The node, or None when absent."""
        return self._run_sync(self._node_plan(node_type, [node_id])).get(node_id)  # type: ignore[no-any-return]

    def get_nodes(self, node_type: str, ids: Sequence[str]) -> dict[str, Node]:
        """Batch get (multi-partition ``IN`` per replica group): id -> node, found ones only, in ``ids`` order."""
        return self._run_sync(self._node_plan(node_type, ids))  # type: ignore[no-any-return]

    async def aget_nodes(self, node_type: str, ids: Sequence[str]) -> dict[str, Node]:
        return await self._run_async(self._node_plan(node_type, ids))  # type: ignore[no-any-return]

    async def aget_node(self, node_type: str, node_id: str) -> Node | None:
        return (await self.aget_nodes(node_type, [node_id])).get(node_id)

    def edges(self, edge_type: str, node_id: str, direction: Direction = "out", limit: int = 100,
              since_ms: int | None = None, order: Order = "latest", after: EdgeCursor | None = None) -> EdgePage:
        """Out- or in-edges of ``node_id``: newest first (latest) or in key order (any), ``limit`` at
        a time, continuing ``after`` a previous page's ``next_cursor``."""
        page: RowPage = self._run_sync(self._rows_plan(edge_type, node_id, direction, limit, since_ms,
                                                       _check_order(order), after))
        return EdgePage(build_edges(edge_type, node_id, direction, page.rows, decode_props), page.next_cursor)

    async def aedge_rows(self, edge_type: str, node_id: str, direction: Direction = "out", limit: int = 100,
                         since_ms: int | None = None, order: Order = "latest", after: EdgeCursor | None = None,
                         want_cursor: bool = True) -> RowPage:
        """Async :meth:`edges` as adjacency rows with raw properties (decode with
        :func:`rdg_platform.kv.codec.decode_props`): the query service shapes its JSON from them
        without building :class:`Edge` objects first."""
        return await self._run_async(self._rows_plan(  # type: ignore[no-any-return]
            edge_type, node_id, direction, limit, since_ms, _check_order(order), after, want_cursor))

    def edges_many(self, edge_type: str, node_ids: Sequence[str], direction: Direction = "out", limit: int = 100,
                   since_ms: int | None = None, order: Order = "latest") -> dict[str, list[Edge]]:
        """The first page of :meth:`edges` for each of ``node_ids`` (node id -> edges), read with a
        few multi-partition requests instead of one per node."""
        rows = self._run_sync(self._adjacency_plan(edge_type, node_ids, direction, limit, since_ms,
                                                   _check_order(order)))
        return {nid: build_edges(edge_type, nid, direction, r, decode_props) for nid, r in rows.items()}

    async def aadjacency_rows(self, edge_type: str, node_ids: Sequence[str], direction: Direction = "out",
                              limit: int = 100, since_ms: int | None = None, order: Order = "latest",
                              sort: bool = True, skipped: set[str] | None = None) -> dict[str, list[AdjacencyRow]]:
        """The edges :meth:`edges_many` reads, as rows ``(neighbour id, updated_at, raw properties)``
        (async, for the query service): a traversal keeps only some of a level's edges, so it
        decodes only those. ``sort=False``: lists not cut to ``limit`` may be in key order;
        ``skipped`` collects nodes with edges left out by ``since_ms``."""
        return await self._run_async(self._adjacency_plan(  # type: ignore[no-any-return]
            edge_type, node_ids, direction, limit, since_ms, _check_order(order), sort, skipped))

    # ------------------------------------------------------------------ degree
    _COUNT_FIRST = "SELECT item_key FROM {t} WHERE record_id = ? LIMIT ?"
    _COUNT_AFTER = "SELECT item_key FROM {t} WHERE record_id = ? AND item_key > ? LIMIT ?"
    _LAST_KEY = "SELECT item_key FROM {t} WHERE record_id = ? ORDER BY item_key DESC LIMIT 1"

    def _count_plan(self, edge_type: str, node_id: str, direction: Direction, bound: int,
                    deadline: float | None) -> Plan:
        """Count the live items of one adjacency list, reading at most ``bound`` keys (key-only
        pages) and stopping at ``deadline`` (``time.monotonic()``); see :class:`EdgeCount`."""
        if bound < 1:
            raise ValueError(f"bound must be >= 1, not {bound}")
        t = self.edge_table(edge_type, direction)
        n = 0
        first_key: str | None = None
        last_seen: str | None = None
        sample: list[str] = []
        while True:
            page = min(_KEY_PAGE, bound + 1 - n)
            if last_seen is None:
                rows = (yield [(t, self._COUNT_FIRST, (node_id, page))])[0]
            else:
                rows = (yield [(t, self._COUNT_AFTER, (node_id, last_seen, page))])[0]
            if rows and first_key is None:
                first_key = rows[0][0]
            if len(sample) < 1000:  # the ids' alphabet, should an estimate be needed
                sample.extend(r[0] for r in rows[:1000 - len(sample)])
            n += len(rows)
            if len(rows) < page:
                return EdgeCount(n, True, n)  # reached the end of the list: every live item counted
            last_seen = rows[-1][0]
            if n > bound or (deadline is not None and time.monotonic() >= deadline):
                break
        last = (yield [(t, self._LAST_KEY, (node_id,))])[0]
        assert first_key is not None and last_seen is not None
        return EdgeCount(estimate_count(n, first_key, last_seen, last[0][0] if last else last_seen, sample),
                         False, n)

    def count_edges(self, edge_type: str, node_id: str, direction: Direction = "out", bound: int = 10_000,
                    deadline: float | None = None) -> EdgeCount:
        """How many ``edge_type`` edges ``node_id`` has on one side (see :class:`EdgeCount`)."""
        return self._run_sync(self._count_plan(edge_type, node_id, direction, bound, deadline))  # type: ignore[no-any-return]

    async def acount_edges(self, edge_type: str, node_id: str, direction: Direction = "out", bound: int = 10_000,
                           deadline: float | None = None) -> EdgeCount:
        """Async :meth:`count_edges` (the query service's Count API)."""
        return await self._run_async(self._count_plan(  # type: ignore[no-any-return]
            edge_type, node_id, direction, bound, deadline))


@dataclass(frozen=True, slots=True)
class EdgeCount:
    """A node's degree on one side. ``exact``: every live item of the adjacency list was counted
    (a key-only read of the partition, so expired TTLs and deletions are not counted and an edge
    written twice, one item, counts once). Otherwise the list had more than the bound's keys (or the
    deadline came first) and ``count`` is an estimate: see :func:`estimate_count`. ``scanned`` is how
    many keys were read."""

    count: int
    exact: bool
    scanned: int


def _key_position(key: str, skip: int, alphabet: str) -> float:
    """Where ``key`` lies in the key space, as a fraction-like number: its characters after ``skip``
    as digits in base ``len(alphabet)`` (a character's digit is its rank in the alphabet)."""
    base = max(2, len(alphabet))
    pos = 0.0
    for i in range(8):
        c = key[skip + i] if skip + i < len(key) else ""
        digit = min(bisect.bisect_left(alphabet, c), base - 1) if c else 0
        pos = pos * base + digit
    return pos


def estimate_count(scanned: int, first: str, nth: str, last: str, sample: Sequence[str] = ()) -> int:
    """Estimate how many keys a sorted list holds from its first ``scanned`` keys (``first`` ..
    ``nth``) and its ``last`` key, assuming keys spread evenly over the key space between ``first``
    and ``last`` (true of random or hashed ids and of sequential numbers): ``scanned`` x the span
    first..last / first..nth. Positions count in the alphabet the keys actually use past their
    common prefix (from ``sample``, some of the keys read), so ids over a small alphabet (hex,
    digits) are measured by their own digits rather than by byte values. Never below ``scanned`` (+1 when the list goes on
    past ``nth``)."""
    skip = 0
    while skip < min(len(first), len(last)) and first[skip] == last[skip]:
        skip += 1
    used: set[str] = set()
    for k in (first, nth, last, *sample):
        used.update(k[skip:])
    chars = "".join(sorted(used))
    lo, mid, hi = (_key_position(k, skip, chars) for k in (first, nth, last))
    floor = scanned + (1 if last > nth else 0)
    if mid <= lo or hi <= mid:
        return floor
    return max(floor, round(scanned * (hi - lo) / (mid - lo)))


def _newest_first(row: AdjacencyRow) -> tuple[int, str]:
    return -row[1], row[0]


def build_edges(edge_type: str, node_id: str, direction: Direction, rows: Sequence[AdjacencyRow],
                decode: Callable[[Any], Any] = _raw_props) -> list[Edge]:
    """Adjacency rows of ``node_id`` -> :class:`Edge` values (``src``/``dst`` by direction)."""
    if direction == "out":
        return [Edge(edge_type, node_id, k, decode(p), u) for k, u, p in rows]
    return [Edge(edge_type, k, node_id, decode(p), u) for k, u, p in rows]


def group_by_replicas(ids: Sequence[str], replicas: Callable[[bytes], Sequence[str]],
                      per_request: int) -> list[tuple[bytes | None, list[str]]]:
    """Split partition keys into requests of at most ``per_request`` keys whose keys all have the
    same replica set (``replicas(key)``), each paired with one of its keys as the routing key."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for i in ids:
        groups.setdefault(tuple(sorted(replicas(i.encode()))), []).append(i)
    return [(g[j].encode(), g[j:j + per_request]) for g in groups.values() for j in range(0, len(g), per_request)]


class _RoutedStatement(BoundStatement):
    """A multi-partition ``IN`` read routed like a single-partition one, to the replicas of ``key``.

    Cassandra reports no routing-key index for ``record_id IN ?``, so the driver would send it to any
    node; every key in the request shares ``key``'s replica set, so routing by ``key`` lets the
    token-aware policy pick (and fail over among) exactly the replicas that hold all the data.
    """

    def __init__(self, ps: PreparedStatement, values: tuple[Any, ...], key: bytes) -> None:
        super().__init__(ps)
        self.bind(values)
        self._routed_key = key

    @property
    def routing_key(self) -> bytes:
        return self._routed_key


def _parallel(plans: Sequence[Plan]) -> Generator[list[Query], list[list[Any]], list[Any]]:
    """Run several plans in lock-step as one: each round sends every unfinished plan's batch together
    (so their requests are in flight at once) and hands each plan its own slice of the results."""
    results: list[Any] = [None] * len(plans)
    pending: dict[int, list[Query]] = {}
    for i, p in enumerate(plans):
        try:
            pending[i] = next(p)
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        order = list(pending)
        got = yield [q for i in order for q in pending[i]]
        nxt: dict[int, list[Query]] = {}
        pos = 0
        for i in order:
            n = len(pending[i])
            try:
                nxt[i] = plans[i].send(got[pos:pos + n])
            except StopIteration as stop:
                results[i] = stop.value
            pos += n
        pending = nxt
    return results
