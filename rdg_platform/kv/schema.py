"""The one place the graph's Cassandra schema is created: keyspaces, namespace tables (forward and
reverse), the newest-first index of every adjacency table and the blue/green pointer table of every
keyspace, and the erasure fence of every keyspace (:mod:`rdg_platform.kv.fence`).

Codec version 2 (:mod:`rdg_platform.kv.codec`): a namespace table has ``props map<text,text>`` for
partial writes and ``pb blob`` for full ones. A table created by an older version gets the ``pb``
column added (``ALTER TABLE``), so it keeps serving; its rows are rewritten in the new layout by a
blue/green rebuild.

Latest index (``<adjacency table>_lt``): ``(record_id, updated_at, item_key)`` clustered newest
first, one row per edge write holding that write's properties (``props``/``pb`` as in the adjacency
row), with the write's TTL. An order=latest read of a list longer than one
page reads it until it has its ``limit`` newest edges instead of reading the whole partition (see
:mod:`rdg_platform.kv.graph_store`). It is created together with its adjacency table only: an
adjacency table that existed before it holds edges the index never saw, so it gets no index (and
reads fall back to reading the list) until a rebuild creates new tables with one.

Entry points call :func:`ensure_schema` explicitly when they provision (``rdg setup``, the demo, a
test session, a rebuild creating its target tables); readers and writers never create tables as a
side effect of their first request. Every statement is ``IF NOT EXISTS``, so running it again, or
from several processes at once, is harmless.

DDL cannot bind identifiers, so keyspace and table names are formatted into the statements; each is
checked with :func:`rdg_platform.topology.check_identifier` first (they come from the validated spec
or from :func:`rdg_platform.kv.versions.versioned`, never from a request).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Protocol

from cassandra import InvalidRequest
from cassandra.cluster import Session

from rdg_platform.kv.fence import ensure_fence_table
from rdg_platform.kv.versions import ensure_meta_table
from rdg_platform.model.spec import GraphSpec, Namespace
from rdg_platform.topology import check_identifier


class _HasClusterSessions(Protocol):
    def cluster_session(self, cluster: str) -> Session: ...


SessionSource = _HasClusterSessions | Callable[[str], Session]

_KEYSPACE = ("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
             "{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}")
_TABLE = ("CREATE TABLE IF NOT EXISTS {ks}.{t} ("
          "record_id text, item_key text, props map<text, text>, value blob, updated_at bigint, pb blob, "
          "PRIMARY KEY ((record_id), item_key)) WITH CLUSTERING ORDER BY (item_key ASC) "
          "AND default_time_to_live = {ttl} AND compaction = {{'class': '{compaction}'}}")
_INDEX = ("CREATE TABLE IF NOT EXISTS {ks}.{t} (record_id text, updated_at bigint, item_key text, "
          "props map<text, text>, pb blob, "
          "PRIMARY KEY ((record_id), updated_at, item_key)) WITH CLUSTERING ORDER BY (updated_at DESC, item_key ASC) "
          "AND default_time_to_live = {ttl} AND compaction = {{'class': '{compaction}'}}")
_HAS_TABLE = "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s"
_HAS_COLUMN = "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s AND column_name = %s"
INDEX_SUFFIX = "_lt"
_COMPACTION_CLASS = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,200}")  # a (qualified) Java class name


def latest_index_table(table: str) -> str | None:
    """The newest-first index table of adjacency table ``table`` (None when the name would be too long
    for CQL: that table then has no index)."""
    name = table + INDEX_SUFFIX
    return name if len(name) <= 48 else None


def _session_of(source: SessionSource) -> Callable[[str], Session]:
    getter = getattr(source, "cluster_session", None)
    if callable(getter):
        return getter  # type: ignore[no-any-return]
    if callable(source):
        return source
    raise TypeError(f"ensure_schema needs a store or a cluster -> session function, not {type(source).__name__}")


def ensure_schema(sessions: SessionSource, spec: GraphSpec, namespaces: Iterable[Namespace] | None = None) -> None:
    """Create what ``namespaces`` (default: every namespace of ``spec``) need, if absent: their
    keyspaces (replication from ``spec.replication_factor``), their tables (the reverse adjacency
    table too for edges) with the namespace's TTL and compaction, and each keyspace's pointer table.

    ``sessions`` is anything with ``cluster_session(name)`` (a ``KVStore``, a ``GraphStore``) or a
    function from cluster name to driver session. Pass ``namespaces`` to create other tables than the
    spec's own, e.g. a rebuild's ``versioned(ns, n)`` targets.
    """
    session_for = _session_of(sessions)
    rf = int(spec.replication_factor)
    if rf < 1:
        raise ValueError(f"replication_factor must be >= 1, not {rf}")
    done: set[tuple[str, str]] = set()
    for ns in spec.namespaces.values() if namespaces is None else namespaces:
        session = session_for(ns.cluster)
        ks = check_identifier(ns.keyspace, "keyspace")
        if (ns.cluster, ks) not in done:
            session.execute(_KEYSPACE.format(ks=ks, rf=rf))
            ensure_meta_table(session, ks)
            ensure_fence_table(session, ks)
            done.add((ns.cluster, ks))
        if not _COMPACTION_CLASS.fullmatch(ns.compaction):
            raise ValueError(f"namespace {ns.name}: compaction {ns.compaction!r} is not a class name")
        for table in ns.tables:
            t = check_identifier(table, "table")
            existed = session.execute(_HAS_TABLE, (ks, t)).one() is not None
            session.execute(_TABLE.format(ks=ks, t=t, ttl=int(ns.ttl_s), compaction=ns.compaction))
            if existed and session.execute(_HAS_COLUMN, (ks, t, "pb")).one() is None:
                try:  # a codec version 1 table: add the blob column (another process may race us)
                    session.execute(f"ALTER TABLE {ks}.{t} ADD pb blob")
                except InvalidRequest as exc:
                    if "conflicts with an existing column" not in str(exc):
                        raise
            idx = latest_index_table(t) if ns.kind == "edge" else None
            if idx is not None and not existed:
                session.execute(_INDEX.format(ks=ks, t=check_identifier(idx, "table"), ttl=int(ns.ttl_s),
                                              compaction=ns.compaction))
