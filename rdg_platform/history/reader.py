"""Reading the graph as of a time T from the history tables (:mod:`rdg_platform.history.tables`).

The state of a node or edge as of T is the fold, with the exact per-property last-write-wins of
:class:`rdg_platform.model.lww.KeyState` (the rule Cassandra applies cell by cell), of its history rows
with ``updated_at <= T``. Expiry as of T follows the namespace TTL measured from event time (as the
stream's TimeGuard measures it): a property cell written at ``ts`` is visible while ``ts + ttl > T``, so
an edge is visible while its newest write is (its ``updated_at`` cell). ``include_expired`` skips the
expiry and returns every edge ever written up to T, with all its properties.

A read is one Iceberg scan filtered on ``origin`` (``IN`` for a traversal level), ``direction`` and
``updated_at`` in ``(T - ttl, T]``: manifest statistics skip days outside the window and Parquet
row-group statistics skip row groups without the origin (the tables are sorted by origin).
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import And, BooleanExpression, EqualTo, GreaterThan, In, LessThanOrEqual
from pyiceberg.table import Table

from rdg_platform.history.tables import load_table
from rdg_platform.model.lww import KeyState
from rdg_platform.model.spec import GraphSpec, RecordKind

if TYPE_CHECKING:
    from rdg_platform.settings import Settings

# One edge as of T: (the other end, updated_at, properties as a dict).
HistoryRow = tuple[str, int, dict[str, Any]]
NEVER = -1


@dataclass(frozen=True, slots=True)
class HistoryNode:
    type: str
    id: str
    properties: dict[str, Any]
    updated_at: int


def _expr(*parts: BooleanExpression) -> BooleanExpression:
    out = parts[0]
    for p in parts[1:]:
        out = And(out, p)
    return out


class HistoryReader:
    """As-of reads over the history tables of one catalog. Thread-safe; blocking (the API runs it in
    a worker thread). Loaded tables are reused for ``cache_s`` seconds before the catalog is asked
    again, so a read pays for the scan only, not for the catalog round trip."""

    def __init__(self, catalog: Catalog | Callable[[], Catalog], spec: GraphSpec, namespace: str = "history",
                 cache_s: float = 5.0) -> None:
        self._catalog = catalog if isinstance(catalog, Catalog) else None
        self._open = None if isinstance(catalog, Catalog) else catalog
        self.spec = spec
        self.namespace = namespace
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._tables: dict[tuple[RecordKind, str], tuple[float, Table | None]] = {}
        self._oldest: dict[str, tuple[float, int | None]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, spec: GraphSpec) -> HistoryReader:
        """The reader of the settings' catalog and ``RDG_HISTORY_*`` (the catalog opens on first use)."""
        from rdg_platform.erasure.engine import archive_catalog

        cfg = archive_catalog(settings)
        return cls(cfg.load, spec, settings.history.namespace, settings.history.cache_s)

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            assert self._open is not None
            with self._lock:
                if self._catalog is None:
                    self._catalog = self._open()
        return self._catalog

    def table(self, kind: RecordKind, type_: str) -> Table | None:
        now = time.monotonic()
        with self._lock:
            hit = self._tables.get((kind, type_))
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        t = load_table(self.catalog, self.namespace, kind, type_)
        with self._lock:
            self._tables[(kind, type_)] = (now, t)
        return t

    def ttl_ms(self, kind: RecordKind, type_: str) -> int:
        return self.spec.namespace(kind, type_).ttl_s * 1000

    def oldest_update(self, edge_type: str) -> int | None:
        """The oldest ``updated_at`` in the edge type's history (file statistics only), or None when
        it holds nothing. Whether anything of the type can have expired from the live store yet."""
        now = time.monotonic()
        hit = self._oldest.get(edge_type)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        t = self.table("edge", edge_type)
        low: int | None = None
        if t is not None and t.current_snapshot() is not None:
            fid = t.schema().find_field("updated_at").field_id
            for task in t.scan().plan_files():
                b = task.file.lower_bounds.get(fid) if task.file.lower_bounds else None
                if b is not None:
                    v = struct.unpack("<q", b)[0]
                    low = v if low is None else min(low, v)
        self._oldest[edge_type] = (now, low)
        return low

    def _scan(self, t: Table, flt: BooleanExpression) -> pa.Table:
        return t.scan(row_filter=flt, selected_fields=("origin", "other", "updated_at", "props")).to_arrow()

    def node(self, node_type: str, node_id: str, as_of: int) -> HistoryNode | None:
        """The node as of ``as_of`` (epoch ms), or None when it did not exist (or had expired) then."""
        return self.nodes(node_type, [node_id], as_of).get(node_id)

    def nodes(self, node_type: str, ids: Sequence[str], as_of: int) -> dict[str, HistoryNode]:
        t = self.table("node", node_type)
        if t is None or not ids:
            return {}
        ttl = self.ttl_ms("node", node_type)
        parts: list[BooleanExpression] = [_origin(ids), LessThanOrEqual("updated_at", as_of)]  # type: ignore[call-arg,misc,arg-type]
        if ttl:
            parts.append(GreaterThan("updated_at", as_of - ttl))  # type: ignore[call-arg,misc,arg-type]
        states = _fold(self._scan(t, _expr(*parts)), "node", node_type)
        out: dict[str, HistoryNode] = {}
        for (origin, _other), st in states.items():
            props = _visible(st, as_of, ttl, False)
            if props is not None:
                out[origin] = HistoryNode(node_type, origin, props, st.max_ts)
        return {i: out[i] for i in ids if i in out}

    def adjacency(self, edge_type: str, ids: Sequence[str], direction: str, as_of: int,
                  include_expired: bool = False) -> dict[str, list[HistoryRow]]:
        """Each of ``ids``' out- or in-edges of ``edge_type`` as of ``as_of``, newest first (ties by
        the other end's id); ``include_expired`` also returns the edges whose TTL had passed by then."""
        t = self.table("edge", edge_type)
        out: dict[str, list[HistoryRow]] = {i: [] for i in ids}
        if t is None or not ids:
            return out
        ttl = self.ttl_ms("edge", edge_type)
        parts: list[BooleanExpression] = [_origin(ids), EqualTo("direction", direction),  # type: ignore[call-arg,misc,arg-type]
                                          LessThanOrEqual("updated_at", as_of)]  # type: ignore[call-arg,misc,arg-type]
        if ttl and not include_expired:
            parts.append(GreaterThan("updated_at", as_of - ttl))  # type: ignore[call-arg,misc,arg-type]
        states = _fold(self._scan(t, _expr(*parts)), "edge", edge_type)
        for (origin, other), st in states.items():
            props = _visible(st, as_of, ttl, include_expired)
            if props is not None and origin in out:
                out[origin].append((other, st.max_ts, props))
        for rows in out.values():
            rows.sort(key=lambda r: (-r[1], r[0]))
        return out


def _origin(ids: Sequence[str]) -> BooleanExpression:
    if len(ids) == 1:
        return EqualTo("origin", ids[0])  # type: ignore[call-arg,misc,arg-type]
    return In("origin", set(ids))  # type: ignore[call-arg,misc,arg-type]


def _fold(data: pa.Table, kind: RecordKind, type_: str) -> dict[tuple[str, str], KeyState]:
    states: dict[tuple[str, str], KeyState] = {}
    if not data.num_rows:
        return states
    origins = data.column("origin").to_pylist()
    others = data.column("other").to_pylist()
    ts = data.column("updated_at").to_pylist()
    props = data.column("props").to_pylist()
    for o, d, u, p in zip(origins, others, ts, props, strict=True):
        st = states.get((o, d))
        if st is None:
            st = states[(o, d)] = KeyState(kind, type_, o, d or None)
        st.add_props(orjson.loads(p) if p else {}, u)
    return states


def _visible(st: KeyState, as_of: int, ttl: int, include_expired: bool) -> dict[str, Any] | None:
    """The properties a reader saw at ``as_of``, or None when the record had expired by then."""
    if ttl and not include_expired and st.max_ts + ttl <= as_of:
        return None
    if not ttl or include_expired:
        return {n: c[2] for n, c in st.cells.items()}
    return {n: c[2] for n, c in st.cells.items() if c[0] + ttl > as_of}
