"""Blue/green namespace versions and namespace checksums.

A rebuilt namespace is written to new tables ``<table>_v<N>`` (+ ``<table>_v<N>_in`` for edges) while
readers keep using the active ones; after validation one row in the pointer table flips the
namespace to the new version. The pointer table lives in the namespace's own keyspace (so it moves
with the namespace when the namespace moves cluster)::

    <keyspace>.namespace_versions (
        namespace text PRIMARY KEY,   -- "edge.plays"
        version int, table_name text, reverse_table text,
        rows bigint, checksum text, previous_table text, switched_at timestamp)

No row = version 0 = the spec's own table. Readers resolve the active tables with
:func:`active_namespace` / :func:`apply_namespace_versions` (GraphStore honours it by building its
tables from the resolved spec and re-resolving periodically); the old version's tables are kept
until an operator drops them, so switching back is one more pointer write.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cassandra.cluster import Session

from rdg_platform.kv.store import token_ranges
from rdg_platform.model.spec import GraphSpec, Namespace

META_TABLE = "namespace_versions"
_VERSION_SUFFIX = re.compile(r"_v\d+$")

_DDL = ("CREATE TABLE IF NOT EXISTS {ks}.namespace_versions (namespace text PRIMARY KEY, version int, "
        "table_name text, reverse_table text, rows bigint, checksum text, previous_table text, "
        "switched_at timestamp)")


@dataclass(frozen=True)
class ActiveVersion:
    namespace: str
    version: int
    table: str
    reverse_table: str | None


def ensure_meta_table(session: Session, keyspace: str) -> None:
    session.execute(_DDL.format(ks=keyspace))


def base_table(ns: Namespace) -> str:
    return _VERSION_SUFFIX.sub("", ns.table)


def versioned(ns: Namespace, version: int) -> Namespace:
    """The namespace pointed at version ``version`` of its tables (0 = the spec's base table)."""
    base = base_table(ns)
    table = base if version == 0 else f"{base}_v{version}"
    if len(table) + 3 > 48:
        raise ValueError(f"versioned table name {table!r} is too long for CQL")
    return dataclasses.replace(ns, table=table, reverse_table=None if ns.reverse_table is None else f"{table}_in")


def active_version(session: Session, ns: Namespace) -> ActiveVersion:
    ensure_meta_table(session, ns.keyspace)
    row = session.execute(
        session.prepare(f"SELECT version, table_name, reverse_table FROM {ns.keyspace}.{META_TABLE} "  # noqa: S608
                        "WHERE namespace = ?"), (ns.name,)).one()
    if row is None:
        return ActiveVersion(ns.name, 0, base_table(ns), ns.reverse_table and f"{base_table(ns)}_in")
    version, table, rev = row[0], row[1], row[2]
    return ActiveVersion(ns.name, int(version), str(table), rev)


def active_namespace(session: Session, ns: Namespace) -> Namespace:
    av = active_version(session, ns)
    return dataclasses.replace(ns, table=av.table, reverse_table=av.reverse_table)


def apply_namespace_versions(spec: GraphSpec, sessions: dict[str, Session]) -> GraphSpec:
    """``spec`` with every namespace pointed at its active version (``sessions``: cluster -> session)."""
    namespaces = {name: active_namespace(sessions[ns.cluster], ns) for name, ns in spec.namespaces.items()}
    return dataclasses.replace(spec, namespaces=namespaces)


def switch_version(session: Session, ns: Namespace, version: int, rows: int, checksum: str) -> ActiveVersion:
    """Point ``ns`` at ``version`` (one row write; readers pick it up on their next resolve)."""
    prev = active_version(session, ns)
    target = versioned(ns, version)
    session.execute(
        session.prepare(f"INSERT INTO {ns.keyspace}.{META_TABLE} (namespace, version, table_name, reverse_table, "  # noqa: S608
                        "rows, checksum, previous_table, switched_at) VALUES (?, ?, ?, ?, ?, ?, ?, toTimestamp(now()))"),
        (ns.name, version, target.table, target.reverse_table, rows, checksum, prev.table))
    return ActiveVersion(ns.name, version, target.table, target.reverse_table)


def _scan(session: Session, keyspace: str, table: str, splits: int) -> Iterator[Any]:
    ps = session.prepare(f"SELECT record_id, item_key, props, updated_at, writetime(updated_at), writetime(props) "  # noqa: S608
                         f"FROM {keyspace}.{table} WHERE token(record_id) > ? AND token(record_id) <= ?")
    for lo, hi in token_ranges(splits):
        bound = ps.bind((lo, hi))
        bound.fetch_size = 2000
        yield from session.execute(bound)


def table_checksum(session: Session, keyspace: str, table: str, splits: int = 8) -> tuple[int, str]:
    """(rows, digest) over every row's key, property values, ``updated_at`` and write times.

    Order-independent (sum of per-row SHA-256 prefixes mod 2^128), so token-range scans in any order
    and two tables filled in different orders compare equal exactly when their contents do.
    """
    total = 0
    rows = 0
    for r in _scan(session, keyspace, table, splits):
        props = r[2] or {}
        keys = sorted(props)
        wts = r[5]
        if isinstance(wts, list | tuple):  # Cassandra 5: one write time per map entry, in key order
            wt_map = dict(zip(sorted(props), wts, strict=False))
        else:
            wt_map = {k: wts for k in keys}
        line = "\x1e".join([r[0], r[1], str(r[3]), str(r[4])] +
                           [f"{k}={props[k]}@{wt_map.get(k)}" for k in keys])
        total = (total + int.from_bytes(hashlib.sha256(line.encode()).digest()[:16], "big")) % (1 << 128)
        rows += 1
    return rows, f"{total:032x}"


def namespace_checksum(session: Session, ns: Namespace) -> dict[str, tuple[int, str]]:
    """Checksums of the namespace's forward (and reverse) table as currently named in ``ns``."""
    return {t: table_checksum(session, ns.keyspace, t) for t in ns.tables}
