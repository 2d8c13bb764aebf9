"""The erasure fence: erased nodes, as keyed hashes, with the time they were erased; every graph writer
drops a record whose event time is not after the erasure of a node it touches.

Why the tombstones alone are not enough: an erasure deletes a node's record and both sides of every
edge it had, with the erasure time as the delete's write time, so an older write to any of those cells
stays shadowed. But a late edge from the erased node to a node it was *not* linked to lands in a cell
no tombstone covers: its forward side is shadowed by the erased node's partition tombstone, its
reverse side (the other node's in-list) is not, and it reappears there as a ghost in-edge. The fence
closes that gap at the writers: the sinks, backfills and rebuilds all write through
:meth:`rdg_platform.kv.graph_store.GraphStore.write`, which asks :meth:`ErasureFence.admit` first.

Layout: table ``erasure_fence`` in every graph keyspace (created by :func:`ensure_fence_table` with the
keyspace's other tables), 16 small partitions ``bucket`` -> ``(node_type, id_hash)`` ->
``erasure_time_ms``, each row with a TTL (``RDG_ERASURE_FENCE_TTL_S``, default 30 days: longer than
Kafka retention, the dedup window and the archive grace, the places an older event can come from).
``id_hash`` is HMAC-SHA-256 of the node type and id under ``RDG_ERASURE_FENCE_KEY``, truncated to
16 bytes: the table says that *some* node was erased, and only a holder of the key can test a given id.

Freshness: a writer re-reads the fence every ``RDG_ERASURE_FENCE_REFRESH_S`` (a full read of 16
small partitions per keyspace). The erasure writes the fence and waits that long plus a second before
it deletes anything, so every write issued after the deletes has seen the fence. A fence that cannot
be read fails the write (the sink retries, then applies backpressure): a writer never writes unfenced.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from rdg_platform.topology import check_identifier

if TYPE_CHECKING:
    from cassandra.cluster import Session

    from rdg_platform.model.mapping import GraphRecord
    from rdg_platform.model.spec import GraphSpec

FENCE_TABLE = "erasure_fence"
BUCKETS = 16
_DDL = ("CREATE TABLE IF NOT EXISTS {ks}.erasure_fence (bucket int, node_type text, id_hash blob, "
        "erasure_time_ms bigint, PRIMARY KEY ((bucket), node_type, id_hash))")
_INSERT = ("INSERT INTO {ks}.erasure_fence (bucket, node_type, id_hash, erasure_time_ms) VALUES (?, ?, ?, ?) "
           "USING TTL ?")
_READ = "SELECT node_type, id_hash, erasure_time_ms FROM {ks}.erasure_fence WHERE bucket = ?"

# (node type, id hash) -> erasure time (ms)
Entries = Mapping[tuple[str, bytes], int]
# the (session, keyspace) pairs the fence lives in (one per distinct graph keyspace)
Places = Callable[[], Sequence[tuple["Session", str]]]


class FenceKeyMissing(RuntimeError):
    """A graph writer or an erasure was configured without ``RDG_ERASURE_FENCE_KEY``."""


def ensure_fence_table(session: Session, keyspace: str) -> None:
    """Create ``<keyspace>.erasure_fence`` if absent (DDL: provisioning entry points only)."""
    session.execute(_DDL.format(ks=check_identifier(keyspace, "keyspace")))


def id_hash(key: bytes, node_type: str, node_id: str) -> bytes:
    """The fence's name for a node: HMAC-SHA-256(key, type NUL id), first 16 bytes."""
    return hmac.new(key, node_type.encode() + b"\0" + node_id.encode(), hashlib.sha256).digest()[:16]


def edge_endpoints(spec: GraphSpec) -> dict[str, tuple[str, str]]:
    """Edge type -> (source node type, destination node type), what :func:`blocked` needs."""
    return {name: (e.src, e.dst) for name, e in spec.edges.items()}


def blocked(record: GraphRecord, entries: Entries, key: bytes, endpoints: Mapping[str, tuple[str, str]]) -> bool:
    """Whether ``record`` touches a fenced node erased at or after the record's event time (a node
    record: its node; an edge: either end)."""
    if record.kind == "node":
        ends: Iterable[tuple[str, str]] = ((record.type, record.id),)
    else:
        src_type, dst_type = endpoints[record.type]
        ends = ((src_type, record.id), (dst_type, record.dst or ""))
    ts = record.updated_at
    for node_type, node_id in ends:
        erased = entries.get((node_type, id_hash(key, node_type, node_id)))
        if erased is not None and ts <= erased:
            return True
    return False


class ErasureFence:
    """One process's view of the fence (read at most every ``refresh_s``) and the erasure's writer.

    Thread-safe. ``places`` gives the (session, keyspace) pairs lazily, so building a fence opens no
    connection; ``on_fenced`` is called with each dropped record (the sinks count them)."""

    def __init__(self, key: bytes, places: Places, endpoints: Mapping[str, tuple[str, str]], *,
                 refresh_s: float = 2.0, ttl_s: int = 2_592_000,
                 on_fenced: Callable[[GraphRecord], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not key:
            raise FenceKeyMissing("the erasure fence needs a key: set RDG_ERASURE_FENCE_KEY (the local "
                                  "credentials give one to the app and admin roles)")
        self.key = key
        self.places = places
        self.endpoints = dict(endpoints)
        self.refresh_s = refresh_s
        self.ttl_s = ttl_s
        self.on_fenced = on_fenced
        self.dropped = 0
        self._clock = clock
        self._entries: dict[tuple[str, bytes], int] = {}
        self._read_at: float | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ writers' side
    def entries(self) -> Entries:
        """The fence as last read, re-read when older than ``refresh_s`` (raises when unreadable)."""
        now = self._clock()
        with self._lock:
            if self._read_at is None or now - self._read_at >= self.refresh_s:
                self._entries = self._read()
                self._read_at = now
            return self._entries

    def _read(self) -> dict[tuple[str, bytes], int]:
        out: dict[tuple[str, bytes], int] = {}
        for session, ks in self.places():
            ps = session.prepare(_READ.format(ks=check_identifier(ks, "keyspace")))
            for bucket in range(BUCKETS):
                for node_type, h, ms in session.execute(ps, (bucket,)):
                    k = (node_type, bytes(h))
                    out[k] = max(out.get(k, ms), ms)
        return out

    def admit(self, records: Sequence[GraphRecord]) -> Sequence[GraphRecord]:
        """``records`` without those the fence blocks (the same sequence when nothing is fenced)."""
        entries = self.entries()
        if not entries:
            return records
        kept = []
        for r in records:
            if blocked(r, entries, self.key, self.endpoints):
                self.dropped += 1
                if self.on_fenced is not None:
                    self.on_fenced(r)
            else:
                kept.append(r)
        return kept

    # ------------------------------------------------------------------ the erasure's side
    def add(self, nodes: Iterable[tuple[str, str]], erasure_time_ms: int) -> int:
        """Fence ``(node type, id)`` pairs as erased at ``erasure_time_ms`` in every keyspace (idempotent);
        returns how many. The caller waits :attr:`propagation_s` before deleting."""
        rows = [(h[0] % BUCKETS, t, h, erasure_time_ms, self.ttl_s)
                for t, i in nodes for h in (id_hash(self.key, t, i),)]
        for session, ks in self.places():
            ps = session.prepare(_INSERT.format(ks=check_identifier(ks, "keyspace")))
            for row in rows:
                session.execute(ps, row)
        with self._lock:
            self._read_at = None  # this process sees its own fence at once
        return len(rows)

    @property
    def propagation_s(self) -> float:
        """How long after :meth:`add` every writer has re-read the fence."""
        return self.refresh_s + 1.0


def fence_places(spec: GraphSpec, cluster_session: Callable[[str], Session]) -> Places:
    """The fence's (session, keyspace) pairs for ``spec``: one per distinct (cluster, keyspace)."""
    seen = sorted({(ns.cluster, ns.keyspace) for ns in spec.namespaces.values()})
    return lambda: [(cluster_session(c), ks) for c, ks in seen]
