"""Blue/green namespace versions: the pointer table, its reads and writes, and table checksums.

A rebuilt namespace is written to new tables ``<table>_v<N>`` (+ ``<table>_v<N>_in`` for edges) while
readers keep using the active ones; after validation one row in the pointer table flips the namespace
to the new version. The table lives in the namespace's own keyspace (so it moves with the namespace
when the namespace moves cluster)::

    <keyspace>.namespace_versions (
        namespace text PRIMARY KEY,   -- "edge.plays"
        version int, table_name text, reverse_table text,
        rows bigint, checksum text, previous_table text, switched_at timestamp)

No row = version 0 = the spec's own table. Every read and write of the pointer is in this module:
:class:`ActiveTables` (what :class:`rdg_platform.kv.graph_store.GraphStore` serves from) reads it at
startup and every few seconds (so the query service and the sinks follow a switch without a
restart), and the rebuild (``rdg_platform.lakehouse.spark``) writes it with :func:`switch_version`.
The old version's tables are kept until an operator drops them, so switching back is one more
pointer write.

Table names read back from the pointer table reach CQL, so they are checked with
:func:`rdg_platform.topology.check_identifier` before use: a tampered or corrupt row is an error,
never an injection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cassandra import InvalidRequest
from cassandra.cluster import Session

from rdg_platform.kv.codec import checksum_line
from rdg_platform.kv.store import KVStore, Table, token_ranges
from rdg_platform.model.spec import GraphSpec, Namespace
from rdg_platform.topology import check_identifier, kv_table

log = logging.getLogger(__name__)

META_TABLE = "namespace_versions"
_VERSION_SUFFIX = re.compile(r"_v\d+$")
_REVERSE_SUFFIX = "_in"
_MAX_TABLE = 48

_DDL = ("CREATE TABLE IF NOT EXISTS {ks}.namespace_versions (namespace text PRIMARY KEY, version int, "
        "table_name text, reverse_table text, rows bigint, checksum text, previous_table text, "
        "switched_at timestamp)")
_SELECT_ONE = "SELECT version, table_name, reverse_table FROM {ks}.namespace_versions WHERE namespace = ?"
_SELECT_ALL = "SELECT namespace, version, table_name, reverse_table FROM {ks}.namespace_versions"
_INSERT = ("INSERT INTO {ks}.namespace_versions (namespace, version, table_name, reverse_table, rows, checksum, "
           "previous_table, switched_at) VALUES (?, ?, ?, ?, ?, ?, ?, toTimestamp(now()))")
_SCAN = ("SELECT record_id, item_key, props, updated_at, writetime(updated_at), writetime(props), pb, writetime(pb) "
         "FROM {ks}.{t} WHERE token(record_id) > ? AND token(record_id) <= ?")


@dataclass(frozen=True)
class ActiveVersion:
    """Which tables a namespace is served from."""

    namespace: str
    version: int
    table: str
    reverse_table: str | None


def _ks(keyspace: str) -> str:
    return check_identifier(keyspace, "keyspace")


def ensure_meta_table(session: Session, keyspace: str) -> None:
    """Create ``keyspace``'s pointer table if absent (:func:`rdg_platform.kv.schema.ensure_schema`
    calls it for every keyspace of the spec)."""
    session.execute(_DDL.format(ks=_ks(keyspace)))


def base_table(ns: Namespace) -> str:
    """The spec's own (version 0) table of ``ns``, whatever version ``ns`` currently names."""
    return _VERSION_SUFFIX.sub("", ns.table)


def _reverse_of(table: str) -> str:
    return table + _REVERSE_SUFFIX


def _tables_of(ns: Namespace, version: int) -> tuple[str, str | None]:
    """(forward, reverse) table names of version ``version`` of ``ns``."""
    if version < 0:
        raise ValueError(f"version must be >= 0, not {version}")
    base = base_table(ns)
    if base == kv_table(ns.kind, ns.type):
        table = kv_table(ns.kind, ns.type, version=version or None)
    else:  # the spec names its own table: versions are suffixed the same way
        table = base if version == 0 else f"{base}_v{version}"
    if len(table) + len(_REVERSE_SUFFIX) > _MAX_TABLE:
        raise ValueError(f"versioned table name {table!r} is too long for CQL")
    check_identifier(table, "table")
    return table, None if ns.reverse_table is None else _reverse_of(table)


def base_version(ns: Namespace) -> ActiveVersion:
    table, reverse = _tables_of(ns, 0)
    return ActiveVersion(ns.name, 0, table, reverse)


def versioned(ns: Namespace, version: int) -> Namespace:
    """The namespace pointed at version ``version`` of its tables (0 = the spec's base table)."""
    table, reverse = _tables_of(ns, version)
    return dataclasses.replace(ns, table=table, reverse_table=reverse)


def _pointer(namespace: str, version: Any, table: Any, reverse: Any) -> ActiveVersion:
    """A pointer row, its table names re-validated (they reach CQL)."""
    t = check_identifier(str(table), f"pointer {namespace}: table_name")
    r = None if reverse is None else check_identifier(str(reverse), f"pointer {namespace}: reverse_table")
    return ActiveVersion(namespace, int(version or 0), t, r)


def active_version(session: Session, ns: Namespace) -> ActiveVersion:
    """The version ``ns`` currently points at (creates the pointer table if absent: writers' path)."""
    ensure_meta_table(session, ns.keyspace)
    row = session.execute(session.prepare(_SELECT_ONE.format(ks=_ks(ns.keyspace))), (ns.name,)).one()
    if row is None:
        return base_version(ns)
    return _pointer(ns.name, row[0], row[1], row[2])


def read_pointers(session: Session, keyspace: str) -> dict[str, ActiveVersion]:
    """Every pointer row of ``keyspace`` (one small read; readers' path, never creates anything).

    A keyspace or pointer table that does not exist yet means "no switch ever happened": ``{}``.
    """
    try:
        ps = session.prepare(_SELECT_ALL.format(ks=_ks(keyspace)))
    except InvalidRequest:  # unconfigured table / keyspace
        return {}
    return {str(r[0]): _pointer(str(r[0]), r[1], r[2], r[3]) for r in session.execute(ps)}


def resolve(ns: Namespace, pointer: ActiveVersion | None) -> Namespace:
    """``ns`` pointed at ``pointer``'s tables (``None``: the base tables)."""
    av = pointer or base_version(ns)
    reverse = None if ns.reverse_table is None else (av.reverse_table or _reverse_of(av.table))
    return dataclasses.replace(ns, table=av.table, reverse_table=reverse)


def active_namespace(session: Session, ns: Namespace) -> Namespace:
    """``ns`` pointed at the tables it is currently served from."""
    return resolve(ns, active_version(session, ns))


def apply_namespace_versions(spec: GraphSpec, sessions: Mapping[str, Session]) -> GraphSpec:
    """``spec`` with every namespace pointed at its active version (``sessions``: cluster -> session)."""
    namespaces = {name: active_namespace(sessions[ns.cluster], ns) for name, ns in spec.namespaces.items()}
    return dataclasses.replace(spec, namespaces=namespaces)


@dataclass(frozen=True)
class TableMap:
    """One immutable snapshot of the active physical tables (swapped whole on a version switch)."""

    namespaces: dict[str, Namespace]
    nodes: dict[str, Table]
    edges: dict[str, tuple[Table, Table]]  # edge type -> (forward, reverse)


class ActiveTables:
    """The tables a spec's node and edge types are served from, following the pointer table.

    The pointers are read on first use and re-checked when older than ``refresh_s`` (None: never read
    them, always use the spec's tables); the very first check runs inline (serve the right version
    from the first request), later ones in a background thread so no read or write waits on them. A
    switch replaces the whole map in one attribute assignment. Namespaces the spec pins to a version
    (table ``<base>_v<N>``: a rebuild writing its target tables) never follow the pointer.
    """

    def __init__(self, spec: GraphSpec, kv: KVStore, refresh_s: float | None) -> None:
        self.spec = spec
        self.kv = kv
        self.refresh_s = refresh_s
        self._map = self._build(dict(spec.namespaces))
        self._lock = threading.Lock()
        self._refreshing = False
        self._resolved = False
        self._next_check = 0.0

    def _build(self, namespaces: dict[str, Namespace]) -> TableMap:
        kv, spec = self.kv, self.spec
        nodes = {n: kv.table(namespaces[spec.namespace("node", n).name]) for n in spec.nodes}
        edges = {e: (kv.table(namespaces[ns.name]), kv.table(namespaces[ns.name], True))
                 for e in spec.edges for ns in (spec.namespace("edge", e),)}
        return TableMap(namespaces, nodes, edges)

    def refresh(self) -> bool:
        """Read the pointers now and swap the map if any changed (returns whether). Raises when
        Cassandra cannot be read or a pointer row is invalid; :meth:`current` keeps the old map then."""
        pointers = {}
        for cluster, keyspace in {(ns.cluster, ns.keyspace) for ns in self.spec.namespaces.values()}:
            pointers[(cluster, keyspace)] = read_pointers(self.kv.cluster_session(cluster), keyspace)
        active = {name: resolve(ns, pointers[(ns.cluster, ns.keyspace)].get(name)) if ns.table == base_table(ns) else ns
                  for name, ns in self.spec.namespaces.items()}
        self._resolved = True
        if self.refresh_s is not None:
            self._next_check = time.monotonic() + self.refresh_s
        if active == self._map.namespaces:
            return False
        old = self._map.namespaces
        self._map = self._build(active)  # one reference assignment: readers see old or new, whole
        for name, ns in active.items():
            if old.get(name) != ns:
                log.info("namespace %s now served from %s.%s", name, ns.keyspace, ns.table)
        return True

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception:  # keep serving the current tables; retry at the next interval
            log.warning("could not read namespace version pointers; keeping current tables", exc_info=True)
        finally:
            self._refreshing = False

    def current(self) -> TableMap:
        """The current map, re-checking the pointers first when they are older than ``refresh_s``."""
        interval = self.refresh_s
        if interval is not None:
            now = time.monotonic()
            if now >= self._next_check:
                with self._lock:
                    if now >= self._next_check and not self._refreshing:
                        self._next_check = now + interval
                        self._refreshing = True
                        if not self._resolved:
                            self._refresh_quietly()
                        else:
                            threading.Thread(target=self._refresh_quietly, name="rdg-ns-versions",
                                             daemon=True).start()
        return self._map


def switch_version(session: Session, ns: Namespace, version: int, rows: int, checksum: str) -> ActiveVersion:
    """Point ``ns`` at ``version`` (one row write; readers pick it up on their next resolve)."""
    prev = active_version(session, ns)
    target = versioned(ns, version)
    session.execute(session.prepare(_INSERT.format(ks=_ks(ns.keyspace))),
                    (ns.name, version, target.table, target.reverse_table, rows, checksum, prev.table))
    return ActiveVersion(ns.name, version, target.table, target.reverse_table)


def _scan(session: Session, keyspace: str, table: str, splits: int) -> Iterator[Any]:
    t = check_identifier(table, "table")
    try:
        ps = session.prepare(_SCAN.format(ks=_ks(keyspace), t=t))
        pad: tuple[Any, ...] = ()
    except InvalidRequest as exc:  # a codec version 1 table (no pb column yet): same digest, no blob
        if "pb" not in str(exc):
            raise
        ps = session.prepare(_SCAN.format(ks=_ks(keyspace), t=t).replace(", pb, writetime(pb)", ""))
        pad = (None, None)
    for lo, hi in token_ranges(splits):
        bound = ps.bind((lo, hi))
        bound.fetch_size = 2000
        for r in session.execute(bound):
            yield (*r, *pad) if pad else r


def table_checksum(session: Session, keyspace: str, table: str, splits: int = 8) -> tuple[int, str]:
    """(rows, digest) over every row's key, property values, ``updated_at`` and write times (the
    properties as state: see :func:`rdg_platform.kv.codec.checksum_line`).

    Order-independent (sum of per-row SHA-256 prefixes mod 2^128), so token-range scans in any order
    and two tables filled in different orders compare equal exactly when their contents do.
    """
    total = 0
    rows = 0
    for r in _scan(session, keyspace, table, splits):
        # Cassandra 5 gives one write time per map entry, in key order; properties are compared
        # whichever column (map or blob) holds them.
        line = checksum_line(r[0], r[1], r[3], r[4], r[2], r[5], r[6], r[7])
        total = (total + int.from_bytes(hashlib.sha256(line.encode()).digest()[:16], "big")) % (1 << 128)
        rows += 1
    return rows, f"{total:032x}"


def namespace_checksum(session: Session, ns: Namespace) -> dict[str, tuple[int, str]]:
    """Checksums of the namespace's forward (and reverse) table as currently named in ``ns``."""
    return {t: table_checksum(session, ns.keyspace, t) for t in ns.tables}
