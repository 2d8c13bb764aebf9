"""Blue/green namespace versions and namespace checksums.

A rebuilt namespace is written to new tables ``<table>_v<N>`` (+ ``<table>_v<N>_in`` for edges) while
readers keep using the active ones; after validation one row in the pointer table flips the
namespace to the new version. The pointer table lives in the namespace's own keyspace (so it moves
with the namespace when the namespace moves cluster)::

    <keyspace>.namespace_versions (
        namespace text PRIMARY KEY,   -- "edge.plays"
        version int, table_name text, reverse_table text,
        rows bigint, checksum text, previous_table text, switched_at timestamp)

No row = version 0 = the spec's own table. The pointer's name, DDL and reads live in
:mod:`rdg_platform.kv.versions` (re-exported here) because readers need them and kv must not import
lakehouse: GraphStore resolves its tables through it at startup and re-checks every few seconds
(``RDG_NAMESPACE_REFRESH_S``), so the query service and sinks follow a switch without a restart.
The old version's tables are kept until an operator drops them, so switching back is one more
pointer write.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any

from cassandra.cluster import Session

from rdg_platform.kv.store import token_ranges
from rdg_platform.kv.versions import (
    META_TABLE,
    ActiveVersion,
    active_namespace,
    active_version,
    apply_namespace_versions,
    base_table,
    ensure_meta_table,
)
from rdg_platform.model.spec import Namespace

__all__ = [
    "META_TABLE", "ActiveVersion", "active_namespace", "active_version", "apply_namespace_versions",
    "base_table", "ensure_meta_table", "namespace_checksum", "switch_version", "table_checksum", "versioned",
]


def versioned(ns: Namespace, version: int) -> Namespace:
    """The namespace pointed at version ``version`` of its tables (0 = the spec's base table)."""
    base = base_table(ns)
    table = base if version == 0 else f"{base}_v{version}"
    if len(table) + 3 > 48:
        raise ValueError(f"versioned table name {table!r} is too long for CQL")
    return dataclasses.replace(ns, table=table, reverse_table=None if ns.reverse_table is None else f"{table}_in")


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
