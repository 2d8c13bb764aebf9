"""The blue/green namespace pointer, as readers see it.

A rebuilt namespace is written to new tables ``<table>_v<N>`` (+ ``<table>_v<N>_in`` for edges);
after validation one row in the pointer table flips readers to it. The table lives in the
namespace's own keyspace (so it moves with the namespace when the namespace moves cluster)::

    <keyspace>.namespace_versions (
        namespace text PRIMARY KEY,   -- "edge.plays"
        version int, table_name text, reverse_table text,
        rows bigint, checksum text, previous_table text, switched_at timestamp)

No row = version 0 = the spec's own table. This module is the kv layer's half (name, DDL, reads):
:class:`rdg_platform.kv.graph_store.GraphStore` resolves its tables through it at startup and every
few seconds, and :mod:`rdg_platform.lakehouse.versions` (which writes the pointer) imports it from
here, since kv must not import lakehouse.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from cassandra import InvalidRequest
from cassandra.cluster import Session

from rdg_platform.model.spec import GraphSpec, Namespace

META_TABLE = "namespace_versions"
_VERSION_SUFFIX = re.compile(r"_v\d+$")

DDL = ("CREATE TABLE IF NOT EXISTS {ks}.namespace_versions (namespace text PRIMARY KEY, version int, "
       "table_name text, reverse_table text, rows bigint, checksum text, previous_table text, "
       "switched_at timestamp)")
_SELECT_ONE = "SELECT version, table_name, reverse_table FROM {ks}.namespace_versions WHERE namespace = ?"
_SELECT_ALL = "SELECT namespace, version, table_name, reverse_table FROM {ks}.namespace_versions"


@dataclass(frozen=True)
class ActiveVersion:
    namespace: str
    version: int
    table: str
    reverse_table: str | None


def ensure_meta_table(session: Session, keyspace: str) -> None:
    session.execute(DDL.format(ks=keyspace))


def base_table(ns: Namespace) -> str:
    """The spec's own (version 0) table of ``ns``, whatever version ``ns`` currently names."""
    return _VERSION_SUFFIX.sub("", ns.table)


def base_version(ns: Namespace) -> ActiveVersion:
    base = base_table(ns)
    return ActiveVersion(ns.name, 0, base, None if ns.reverse_table is None else f"{base}_in")


def active_version(session: Session, ns: Namespace) -> ActiveVersion:
    """The version ``ns`` currently points at (creates the pointer table if absent: writers' path)."""
    ensure_meta_table(session, ns.keyspace)
    row = session.execute(session.prepare(_SELECT_ONE.format(ks=ns.keyspace)), (ns.name,)).one()
    if row is None:
        return base_version(ns)
    return ActiveVersion(ns.name, int(row[0]), str(row[1]), row[2])


def read_pointers(session: Session, keyspace: str) -> dict[str, ActiveVersion]:
    """Every pointer row of ``keyspace`` (one small read; readers' path, never creates anything).

    A keyspace or pointer table that does not exist yet means "no switch ever happened": ``{}``.
    """
    try:
        ps = session.prepare(_SELECT_ALL.format(ks=keyspace))
    except InvalidRequest:  # unconfigured table / keyspace
        return {}
    return {str(r[0]): ActiveVersion(str(r[0]), int(r[1] or 0), str(r[2]), r[3]) for r in session.execute(ps)}


def resolve(ns: Namespace, pointer: ActiveVersion | None) -> Namespace:
    """``ns`` pointed at ``pointer``'s tables (``None``: the base tables)."""
    av = pointer or base_version(ns)
    return dataclasses.replace(ns, table=av.table,
                               reverse_table=None if ns.reverse_table is None else (av.reverse_table or f"{av.table}_in"))


def active_namespace(session: Session, ns: Namespace) -> Namespace:
    av = active_version(session, ns)
    return dataclasses.replace(ns, table=av.table, reverse_table=av.reverse_table)


def apply_namespace_versions(spec: GraphSpec, sessions: dict[str, Session]) -> GraphSpec:
    """``spec`` with every namespace pointed at its active version (``sessions``: cluster -> session)."""
    namespaces = {name: active_namespace(sessions[ns.cluster], ns) for name, ns in spec.namespaces.items()}
    return dataclasses.replace(spec, namespaces=namespaces)
