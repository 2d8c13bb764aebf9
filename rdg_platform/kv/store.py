"""KVStore: Netflix KVDAL's two-level map on Cassandra.

A *namespace* (one per node/edge type, from ``spec.namespaces``) is one table::

    record_id  text     -- partition key: the node id, or the edge's origin node (adjacency owner)
    item_key   text     -- clustering key: NODE_ITEM for nodes, the other end's id for edges
    props      map<text, text>   -- JSON-encoded property values of partial writes, LWW per property
    pb         blob     -- the whole property set of a full write (see rdg_platform.kv.codec)
    value      blob     -- opaque value for generic KV users
    updated_at bigint   -- event time (ms) of the latest write; ends as the max event time

Every write is ``UPDATE ... USING TIMESTAMP <event_time_ms*1000> AND TTL <ttl>``: the event time is the
cell timestamp, so a late, older update never overwrites a newer one, retries and replays converge,
and a partial update touches only the properties it carries (a full one, every property of the type,
is one blob: :mod:`rdg_platform.kv.codec` has the layout and why LWW stays per property). Writes are idempotent by construction,
which is what lets the streaming sink be at-least-once.

Operations: :meth:`KVStore.put_items`, :meth:`get_items` (keys / prefix / range, paged by a
clustering-key cursor), :meth:`delete_items`, :meth:`mutate` (single-partition batch) and
:meth:`scan` over token ranges. Tables are created by :func:`rdg_platform.kv.schema.ensure_schema`. Prepared statements only; identifiers come from the validated spec
and are formatted into the CQL once, at prepare time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, PreparedStatement

from rdg_platform.kv.cluster import ClusterConfig, Credentials, SessionRegistry
from rdg_platform.kv.codec import encode_blob, encode_props, merge_props
from rdg_platform.model.spec import GraphSpec, Namespace
from rdg_platform.topology import check_identifier

if TYPE_CHECKING:
    from rdg_platform.settings import CassandraSettings

NODE_ITEM = "_"  # the single item key of a node record
MAX_PAGE = 5000  # largest LIMIT a read issues (reads are never driver-paged: fetch_size=None)
MIN_TOKEN = -(2**63)
MAX_TOKEN = 2**63 - 1
_PING = "SELECT release_version FROM system.local"


class KVError(RuntimeError):
    """A KV operation failed at Cassandra (after the driver's own retries)."""


class KVWriteError(KVError):
    """Some writes of a put/write call were not acknowledged; nothing is known about which."""


@dataclass(frozen=True, slots=True)
class KVItem:
    """One item of a record. On write, ``updated_at`` is the event time (ms) and becomes the write
    timestamp; ``ttl_s`` overrides the record/namespace TTL for this item (0 = never expires)."""

    record_id: str
    item_key: str
    props: Mapping[str, Any] | None = None
    value: bytes | None = None
    updated_at: int = 0
    ttl_s: int | None = None


@dataclass(frozen=True, slots=True)
class ItemPage:
    """One page of a record's items; ``next_after`` is the cursor of the next page (the last item
    key of this one; pass it as ``after``), None on the last page."""

    items: list[KVItem]
    next_after: str | None


@dataclass(frozen=True)
class Table:
    """A resolved physical table of a namespace (forward or reverse) and its cluster's session."""

    namespace: Namespace
    cluster: str
    keyspace: str
    name: str

    @property
    def fq(self) -> str:
        return f"{self.keyspace}.{self.name}"


_SEL = "SELECT item_key, updated_at, props, value, pb FROM {t} WHERE record_id = ?"
# (lower-bound operator, has upper bound) -> template; constant strings, values are bound.
_RANGE_QUERIES: dict[tuple[str | None, bool], str] = {
    (None, False): _SEL + " LIMIT ?",
    (None, True): _SEL + " AND item_key < ? LIMIT ?",
    (">=", False): _SEL + " AND item_key >= ? LIMIT ?",
    (">=", True): _SEL + " AND item_key >= ? AND item_key < ? LIMIT ?",
    (">", False): _SEL + " AND item_key > ? LIMIT ?",
    (">", True): _SEL + " AND item_key > ? AND item_key < ? LIMIT ?",
}


def _prefix_end(prefix: str) -> str:
    """Smallest string greater than every string starting with ``prefix`` (code point order, which is
    also UTF-8 byte order, Cassandra's order for ``text``)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class KVStore:
    """The KV layer. Thread-safe; holds one session per cluster via :class:`SessionRegistry`."""

    def __init__(self, namespaces: Mapping[str, Namespace], registry: SessionRegistry,
                 replication_factor: int = 1, concurrency: int = 128) -> None:
        self.namespaces = dict(namespaces)
        self._registry = registry
        self.replication_factor = replication_factor
        self.concurrency = concurrency
        self._prepared: dict[tuple[str, str], PreparedStatement] = {}

    @classmethod
    def from_spec(cls, spec: GraphSpec, cassandra: CassandraSettings | None = None, concurrency: int = 128,
                  **cluster_overrides: Any) -> KVStore:
        """Build from a validated spec: one cluster config per ``spec.clusters`` entry (contact points,
        port, data centre), all logging in with ``cassandra``'s credentials and CA (none when None).
        Connections open lazily (first use), so this never blocks or fails."""
        creds = Credentials.of(cassandra)
        configs = {name: ClusterConfig(name, c.contact_points, c.port, c.local_dc, credentials=creds,
                                       **cluster_overrides)
                   for name, c in spec.clusters.items()}
        return cls(spec.namespaces, SessionRegistry(configs), spec.replication_factor, concurrency)

    def close(self) -> None:
        self._registry.close()

    # ------------------------------------------------------------------ plumbing
    def namespace(self, name: str) -> Namespace:
        try:
            return self.namespaces[name]
        except KeyError:
            raise KeyError(f"unknown namespace {name!r} (known: {sorted(self.namespaces)})") from None

    def table(self, ns: Namespace | str, reverse: bool = False) -> Table:
        n = self.namespace(ns) if isinstance(ns, str) else ns
        if reverse:
            if n.reverse_table is None:
                raise KeyError(f"namespace {n.name!r} has no reverse table")
            return Table(n, n.cluster, n.keyspace, n.reverse_table)
        return Table(n, n.cluster, n.keyspace, n.table)

    def session(self, t: Table) -> Session:
        return self.cluster_session(t.cluster)

    def prepare(self, t: Table, cql: str, paged: bool = False) -> PreparedStatement:
        """Prepare (once per cluster) a CQL template; ``{t}`` is replaced by the table's name."""
        key = (t.cluster, cql.replace("{t}", t.fq))
        ps = self._prepared.get(key)
        if ps is None:
            ps = self.session(t).prepare(key[1])
            ps.is_idempotent = True  # explicit timestamps make every statement safe to retry
            if not paged:
                ps.fetch_size = None  # reads carry their own LIMIT and are paged by cursor
            self._prepared[key] = ps
        return ps

    # ------------------------------------------------------------------ admin
    def cluster_session(self, cluster: str) -> Session:
        """The driver session of one cluster, for the few callers that run their own CQL on it
        (schema, the blue/green pointer, maintenance, checksums); reads and writes use the methods."""
        return self._registry.session(cluster)

    def clusters(self) -> list[str]:
        """The clusters this store's namespaces live on."""
        return sorted({ns.cluster for ns in self.namespaces.values()})

    def ping(self) -> dict[str, str]:
        """Prove every cluster answers: one ``system.local`` read each; cluster -> release version.
        Raises the driver's error (NoHostAvailable, OperationTimedOut...) when one does not."""
        out: dict[str, str] = {}
        for cluster in self.clusters():
            session = self.cluster_session(cluster)
            row = session.execute(self._ping_statement(cluster, session)).one()
            out[cluster] = str(row[0]) if row else ""
        return out

    def _ping_statement(self, cluster: str, session: Session) -> PreparedStatement:
        key = (cluster, _PING)
        ps = self._prepared.get(key)
        if ps is None:
            ps = self._prepared[key] = session.prepare(_PING)
            ps.is_idempotent = True
        return ps

    def drop_keyspaces(self) -> None:
        """Drop every keyspace this store's namespaces use (tests and teardown only)."""
        seen: set[tuple[str, str]] = set()
        for ns in self.namespaces.values():
            if (ns.cluster, ns.keyspace) not in seen:
                seen.add((ns.cluster, ns.keyspace))
                ks = check_identifier(ns.keyspace, "keyspace")
                self.cluster_session(ns.cluster).execute(f"DROP KEYSPACE IF EXISTS {ks}")

    # ------------------------------------------------------------------ writes
    UPSERT = ("UPDATE {t} USING TIMESTAMP ? AND TTL ? SET props = props + ?, value = ?, updated_at = ? "
              "WHERE record_id = ? AND item_key = ?")

    # A full write: every property of the type, as one blob; ``props = null`` overwrites the map (a
    # collection tombstone at the write's timestamp - 1), so no older partial cell outlives it.
    UPSERT_FULL = ("UPDATE {t} USING TIMESTAMP ? AND TTL ? SET pb = ?, props = null, value = ?, updated_at = ? "
                   "WHERE record_id = ? AND item_key = ?")

    @staticmethod
    def full_params(record_id: str, item_key: str, props: Mapping[str, Any], value: bytes | None,
                    event_time_ms: int, ttl_s: int) -> tuple[Any, ...]:
        """Bound values for :attr:`UPSERT_FULL` (``props`` must hold every property of the type)."""
        return (event_time_ms * 1000, ttl_s, encode_blob(props), UNSET_VALUE if value is None else value,
                event_time_ms, record_id, item_key)

    @staticmethod
    def upsert_params(record_id: str, item_key: str, props: Mapping[str, Any] | None, value: bytes | None,
                      event_time_ms: int, ttl_s: int) -> tuple[Any, ...]:
        """Bound values for :attr:`UPSERT`. Absent props/value are UNSET (not null), so a write
        never tombstones what it does not carry."""
        return (event_time_ms * 1000, ttl_s, encode_props(props) if props else UNSET_VALUE,
                UNSET_VALUE if value is None else value, event_time_ms, record_id, item_key)

    def execute_writes(self, writes: Sequence[tuple[Table, tuple[Any, ...]]]) -> None:
        """Run UPSERTs concurrently (bounded), grouped per cluster; block until all are acked."""
        self.execute_statements([(t, self.UPSERT, params) for t, params in writes])

    def execute_statements(self, writes: Sequence[tuple[Table, str, tuple[Any, ...]]]) -> None:
        """Run ``(table, CQL template, bound values)`` writes concurrently (bounded), grouped per
        cluster; block until all are acked."""
        by_cluster: dict[str, list[tuple[PreparedStatement, tuple[Any, ...]]]] = {}
        stmts: dict[tuple[Table, str], tuple[PreparedStatement, list[tuple[PreparedStatement, tuple[Any, ...]]]]] = {}
        for t, cql, params in writes:
            entry = stmts.get((t, cql))
            if entry is None:
                entry = stmts[(t, cql)] = (self.prepare(t, cql), by_cluster.setdefault(t.cluster, []))
            entry[1].append((entry[0], params))
        for cluster, batch in by_cluster.items():
            self._run(self.cluster_session(cluster), batch)

    def _run(self, session: Session, batch: Sequence[tuple[Any, Any]]) -> None:
        if not batch:
            return
        try:
            results = execute_concurrent(session, batch, concurrency=self.concurrency,
                                         raise_on_first_error=True, results_generator=False)
        except Exception as exc:
            raise KVWriteError(f"{len(batch)} writes not all acknowledged: {type(exc).__name__}: {exc}") from exc
        for ok, res in results:
            if not ok:  # pragma: no cover - raise_on_first_error raises before this
                raise KVWriteError(f"write failed: {res}")

    def put_items(self, namespace: str, items: Sequence[KVItem], ttl_s: int | None = None,
                  reverse: bool = False) -> None:
        """Upsert items (concurrently). TTL precedence: ``item.ttl_s`` > ``ttl_s`` (the record/call
        level) > the namespace's ``ttl_s``. An item's ``updated_at`` (event time, ms) is its write
        timestamp; 0 means "now"."""
        t = self.table(namespace, reverse)
        default_ttl = t.namespace.ttl_s if ttl_s is None else ttl_s
        now = int(time.time() * 1000)
        writes = [(t, self.upsert_params(i.record_id, i.item_key, i.props, i.value, i.updated_at or now,
                                         default_ttl if i.ttl_s is None else i.ttl_s)) for i in items]
        self.execute_writes(writes)

    def delete_items(self, namespace: str, record_id: str, item_keys: Sequence[str] | None = None,
                     event_time_ms: int | None = None, reverse: bool = False) -> None:
        """Delete items (or the whole record when ``item_keys`` is None) as of ``event_time_ms``:
        writes with a later event time survive, so a late delete cannot erase newer data."""
        self.delete_table_items(self.table(namespace, reverse), record_id, item_keys, event_time_ms)

    def delete_table_items(self, t: Table, record_id: str, item_keys: Sequence[str] | None = None,
                           event_time_ms: int | None = None) -> None:
        """:meth:`delete_items` on a resolved table (e.g. a blue/green version's)."""
        ts = (event_time_ms or int(time.time() * 1000)) * 1000
        session = self.session(t)
        if item_keys is None:
            session.execute(self.prepare(t, "DELETE FROM {t} USING TIMESTAMP ? WHERE record_id = ?"), (ts, record_id))
            return
        ps = self.prepare(t, "DELETE FROM {t} USING TIMESTAMP ? WHERE record_id = ? AND item_key = ?")
        self._run(session, [(ps, (ts, record_id, k)) for k in item_keys])

    def delete_table_cells(self, t: Table, cells: Sequence[tuple[str, str]], event_time_ms: int) -> None:
        """Delete ``(record_id, item_key)`` items of many records of one table, concurrently, all as of
        ``event_time_ms`` (> 0: the timestamp is explicit, never "now"; writes with a later event
        time survive, writes with an older or equal one are shadowed by the tombstone)."""
        if event_time_ms <= 0:
            raise ValueError(f"event_time_ms must be > 0, not {event_time_ms}")
        ps = self.prepare(t, "DELETE FROM {t} USING TIMESTAMP ? WHERE record_id = ? AND item_key = ?")
        self._run(self.session(t), [(ps, (event_time_ms * 1000, r, k)) for r, k in cells])

    def item_keys(self, t: Table, record_id: str, page_size: int = MAX_PAGE) -> Iterator[str]:
        """Every item key of one record of a resolved table, in key order, ``page_size`` at a time
        (bounded single-partition reads continuing after the last key)."""
        first = self.prepare(t, "SELECT item_key FROM {t} WHERE record_id = ? LIMIT ?")
        nxt = self.prepare(t, "SELECT item_key FROM {t} WHERE record_id = ? AND item_key > ? LIMIT ?")
        session = self.session(t)
        rows = list(session.execute(first, (record_id, page_size)))
        while rows:
            for r in rows:
                yield str(r[0])
            if len(rows) < page_size:
                return
            rows = list(session.execute(nxt, (record_id, rows[-1][0], page_size)))

    def mutate(self, namespace: str, record_id: str, puts: Sequence[KVItem] = (),
               deletes: Sequence[str] = (), event_time_ms: int | None = None, ttl_s: int | None = None) -> None:
        """Apply puts and deletes to ONE record atomically (a single-partition unlogged batch, which
        Cassandra applies atomically and in isolation). Each statement keeps its own timestamp."""
        t = self.table(namespace)
        now = event_time_ms or int(time.time() * 1000)
        default_ttl = t.namespace.ttl_s if ttl_s is None else ttl_s
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        up = self.prepare(t, self.UPSERT)
        for i in puts:
            if i.record_id != record_id:
                raise ValueError(f"mutate: item for record {i.record_id!r} in a mutation of {record_id!r}")
            batch.add(up, self.upsert_params(record_id, i.item_key, i.props, i.value, i.updated_at or now,
                                             default_ttl if i.ttl_s is None else i.ttl_s))
        dl = self.prepare(t, "DELETE FROM {t} USING TIMESTAMP ? WHERE record_id = ? AND item_key = ?")
        for k in deletes:
            batch.add(dl, (now * 1000, record_id, k))
        if len(batch) == 0:
            return
        try:
            self.session(t).execute(batch)
        except Exception as exc:
            raise KVWriteError(f"mutate {namespace}/{record_id} failed: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ reads
    def get_items(self, namespace: str, record_id: str, keys: Sequence[str] | None = None,
                  prefix: str | None = None, start: str | None = None, end: str | None = None,
                  page_size: int = 100, after: str | None = None, reverse: bool = False) -> ItemPage:
        """Read a record's items in key order: all of them, only ``keys``, a key ``prefix``, or the
        range ``start`` (inclusive) .. ``end`` (exclusive), ``page_size`` at a time, continuing
        ``after`` a key (a previous page's ``next_after``). The cursor is a clustering key, so pages
        are stable under concurrent writes and cost one bounded single-partition read each."""
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError(f"page_size must be in 1..{MAX_PAGE}")
        t = self.table(namespace, reverse)
        session = self.session(t)
        if keys is not None:
            ps = self.prepare(t, "SELECT item_key, updated_at, props, value, pb FROM {t} "
                                 "WHERE record_id = ? AND item_key IN ?")
            rows = list(session.execute(ps, (record_id, list(keys))))
            return ItemPage([self._item(record_id, r) for r in rows], None)
        lower, lower_op = start, ">="
        if prefix:
            if lower is None or prefix > lower:
                lower, lower_op = prefix, ">="
            pend = _prefix_end(prefix)
            end = pend if end is None or pend < end else end
        if after is not None and (lower is None or after >= lower):
            lower, lower_op = after, ">"
        params: list[Any] = [record_id]
        op = None
        if lower is not None:
            op = lower_op
            params.append(lower)
        if end is not None:
            params.append(end)
        ps = self.prepare(t, _RANGE_QUERIES[(op, end is not None)])
        rows = list(session.execute(ps, (*params, page_size + 1)))
        items = [self._item(record_id, r) for r in rows[:page_size]]
        return ItemPage(items, items[-1].item_key if len(rows) > page_size else None)

    @staticmethod
    def _item(record_id: str, row: Sequence[Any]) -> KVItem:
        return KVItem(record_id, row[0], merge_props(row[2], row[4]), row[3], row[1] or 0)

    def scan(self, namespace: str, splits: int = 16, page_size: int = 1000, reverse: bool = False,
             ranges: Sequence[tuple[int, int]] | None = None) -> Iterator[KVItem]:
        """Every item of a namespace, by token range (``splits`` equal slices of the Murmur3 ring, or
        explicit ``ranges`` of (exclusive start, inclusive end) so callers can parallelise an export).
        Driver-paged, so memory stays bounded."""
        t = self.table(namespace, reverse)
        ps = self.prepare(t, "SELECT record_id, item_key, updated_at, props, value, pb FROM {t} "
                             "WHERE token(record_id) > ? AND token(record_id) <= ?", paged=True)
        session = self.session(t)
        for lo, hi in ranges or token_ranges(splits):
            bound = ps.bind((lo, hi))
            bound.fetch_size = page_size
            for r in session.execute(bound):
                yield KVItem(r[0], r[1], merge_props(r[3], r[5]), r[4], r[2] or 0)


def token_ranges(splits: int) -> list[tuple[int, int]]:
    """Split the Murmur3 ring into ``splits`` contiguous (start exclusive, end inclusive] ranges."""
    if splits < 1:
        raise ValueError("splits must be >= 1")
    width = (MAX_TOKEN - MIN_TOKEN) // splits
    bounds = [MIN_TOKEN + i * width for i in range(splits)] + [MAX_TOKEN]
    return list(zip(bounds[:-1], bounds[1:], strict=True))
