"""Member erasure: remove an account, its profiles and the devices no other account uses, with every
edge of those nodes, from the graph and from the Iceberg archive; record it in the audit table.

Steps, each persisted in the audit table before the next starts, so a run killed at any point (kill
-9 included) continues where it stopped when run again, and running a finished erasure again does
nothing:

1. ``plan``: read the account's ``has_profile`` out-edges (its profiles) and its device edges
   (``logged_in_from``, ``streamed_from``); a device is erased only when none of those edge types
   links it to another account. The node list is stored in the work table.
2. ``graph``: first every planned node is put on the erasure fence (:mod:`rdg_platform.kv.fence`:
   keyed hashes and the erasure time, read by every graph writer) and the run waits until every
   writer has re-read it; then, for each planned node, every edge type that touches its type, in both directions: the
   adjacency list on the node's side is read, the mirror items deleted from the other side, then the
   list itself; finally the node record. Each part's edge count is stored as it completes.
3. ``archive``: the account's rows are deleted from every archive table with an ``account_id``
   column; the snapshots that still hold them may be expired after the grace period
   (``RDG_ERASURE_ARCHIVE_GRACE_S``).
4. ``expire``: once the grace period has passed, rows re-archived meanwhile are deleted again, the
   snapshots still holding the account are expired and the files only they referenced deleted. A run
   that reaches this step early either waits (``wait_grace_s``) or returns with the erasure still
   ``running`` at this step; ``rdg erase resume`` or the Dagster schedule finishes it.

The timestamp rule: every delete carries the erasure time (the request time, fixed at creation) as
its Cassandra write timestamp, in the unit writes use (event time in ms x 1000 = microseconds).
Writes carry their event time the same way, so any write whose event time is not after the erasure
(a late event, an archive replay, a dedup buffer flushing, a Kafka record still unconsumed) is
shadowed by the tombstones, while activity after the erasure creates the member anew. Tombstones are
purged after the table's ``gc_grace_seconds`` (10 days by default); every source of old events (Kafka
retention, dedup windows, the archive, whose rows step 3 deletes) is shorter-lived than that.

The fence covers what no tombstone can: a late edge from an erased node to a node it was not linked to
(its reverse side would land in that node's in-list). Writers drop every record older than the
erasure that touches a fenced node, for ``RDG_ERASURE_FENCE_TTL_S``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pyiceberg.catalog import Catalog

from rdg_platform.erasure.archive import archive_tables, delete_rows, expire_holding_snapshots
from rdg_platform.erasure.audit import STEPS, AuditLog, ErasureStatus, WorkItem, now_ms
from rdg_platform.kv.fence import ErasureFence, FenceKeyMissing, edge_endpoints, fence_places
from rdg_platform.kv.graph_store import Direction, GraphStore
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.settings import Settings

log = logging.getLogger(__name__)
SUBJECT_TYPES: tuple[str, ...] = ("account",)
MAX_ID_LEN = 256
Progress = Callable[[ErasureStatus], None]


@dataclass(frozen=True)
class ErasurePolicy:
    """What an erasure of ``root`` removes: the nodes at the end of its ``owned`` edge types always, the
    nodes at the end of its ``shared`` edge types when no other ``root`` node reaches them through
    those edge types. ``archive_column`` names the root's id in the archive tables."""

    root: str = "account"
    owned: tuple[str, ...] = ("has_profile",)
    shared: tuple[str, ...] = ("logged_in_from", "streamed_from")
    archive_column: str = "account_id"


DEFAULT_POLICY = ErasurePolicy()


class ErasureError(RuntimeError):
    """An erasure cannot run (unknown id, lost plan, bad subject)."""


def archive_catalog(settings: Settings) -> CatalogConfig:
    """The Iceberg catalog the archive lives in, from the settings (local SQLite under the state
    directory unless ``RDG_ICEBERG_CATALOG_URI`` / ``RDG_ICEBERG_WAREHOUSE`` say otherwise)."""
    i, s3 = settings.iceberg, settings.s3
    local = CatalogConfig.local(settings.state_dir / "iceberg")
    return CatalogConfig(
        name=local.name, uri=i.catalog_uri or local.uri, warehouse=i.warehouse or local.warehouse,
        user=i.catalog_user, password=i.catalog_password.get_secret_value() if i.catalog_password else None,
        s3_endpoint=s3.endpoint, s3_access_key_id=s3.access_key_id,
        s3_secret_access_key=s3.secret_access_key.get_secret_value() if s3.secret_access_key else None,
        s3_region=s3.region, s3_path_style_access=s3.path_style_access)


def check_subject(subject_type: str, subject_id: str) -> None:
    """Raise ValueError naming the problem when the subject cannot be erased."""
    if subject_type not in SUBJECT_TYPES:
        raise ValueError(f"type must be one of {list(SUBJECT_TYPES)}, not {subject_type!r}")
    # The API's id rule (serving.traversal.ID_PATTERN): 1-256 characters, no control characters.
    if not subject_id or len(subject_id) > MAX_ID_LEN or any(c < " " or c == "\x7f" for c in subject_id):
        raise ValueError("id must be 1-256 printable characters")


class ErasureEngine:
    """Runs erasures against one graph store and one archive catalog (see the module docstring)."""

    def __init__(self, store: GraphStore, catalog: CatalogConfig | Callable[[], Catalog] | None,
                 archive_grace_s: float, policy: ErasurePolicy = DEFAULT_POLICY,
                 fence: ErasureFence | None = None) -> None:
        """``fence`` defaults to the store's (a writer store); without either the erasure cannot keep
        late writes out, so it refuses (:class:`FenceKeyMissing`)."""
        self.store = store
        fence = fence or store.fence
        if fence is None:
            raise FenceKeyMissing("an erasure needs the erasure fence: set RDG_ERASURE_FENCE_KEY (the local "
                                  "credentials give the admin role one)")
        self.fence = fence
        self.policy = policy
        self.archive_grace_s = archive_grace_s
        self._catalog = catalog
        ns = store.spec.namespace("node", policy.root)
        self.audit = AuditLog(store.kv.cluster_session(ns.cluster), ns.keyspace)

    @classmethod
    def from_settings(cls, store: GraphStore, settings: Settings) -> ErasureEngine:
        e = settings.erasure
        fence = store.fence
        if fence is None:
            key = e.fence_key.get_secret_value().encode() if e.fence_key is not None else b""
            fence = ErasureFence(key, fence_places(store.spec, store.kv.cluster_session), edge_endpoints(store.spec),
                                 refresh_s=e.fence_refresh_s, ttl_s=e.fence_ttl_s)
        return cls(store, archive_catalog(settings), e.archive_grace_s, fence=fence)

    def ensure_schema(self) -> None:
        self.audit.ensure_schema()

    def catalog(self) -> Catalog | None:
        if self._catalog is None:
            return None
        return self._catalog.load() if isinstance(self._catalog, CatalogConfig) else self._catalog()

    # ------------------------------------------------------------------ entry points
    def request(self, subject_type: str, subject_id: str, erasure_time_ms: int | None = None) -> ErasureStatus:
        """Create an erasure of the subject (status ``pending``), or return the unfinished one that
        already exists for it: requesting twice runs once."""
        check_subject(subject_type, subject_id)
        for eid in self.audit.pending():
            if self.audit.subject(eid) == subject_id:
                st = self.audit.get(eid)
                if st is not None and st.subject_type == subject_type:
                    return st
        return self.audit.create(uuid.uuid4().hex, subject_type, subject_id, erasure_time_ms or now_ms())

    def status(self, erasure_id: str) -> ErasureStatus | None:
        return self.audit.get(erasure_id)

    def pending(self) -> list[str]:
        return self.audit.pending()

    def run(self, erasure_id: str, *, wait_grace_s: float = 0.0, throttle_s: float = 0.0,
            progress: Progress | None = None) -> ErasureStatus:
        """Run (or continue) an erasure until done, or until it must wait longer than ``wait_grace_s``
        for the archive grace period. ``throttle_s`` pauses after each node (spreads the deletes of a
        large erasure). Any failure is recorded (status ``failed``, the error) and raised; running the
        erasure again continues from the failed step."""
        st = self.audit.get(erasure_id)
        if st is None:
            raise ErasureError(f"no erasure {erasure_id!r}")
        if st.status == "done":
            return st
        subject = self.audit.subject(erasure_id)
        if subject is None:
            self.audit.update(erasure_id, status="failed", error="the erasure's plan is gone (work table row missing)")
            raise ErasureError(f"erasure {erasure_id}: the plan is gone; request a new erasure of the subject")

        def report() -> ErasureStatus:
            cur = self.audit.get(erasure_id)
            assert cur is not None
            if progress is not None:
                progress(cur)
            return cur

        self.audit.update(erasure_id, status="running", clear_error=True)
        try:
            step = st.step
            if step == "plan":
                self._plan(erasure_id, subject)
                step = self._advance(erasure_id, "graph")
                report()
            if step == "graph":
                self._graph(erasure_id, st.erasure_time_ms, throttle_s, report if progress is not None else None)
                step = self._advance(erasure_id, "archive")
                report()
            if step == "archive":
                self._archive(erasure_id, subject)
                step = self._advance(erasure_id, "expire")
                report()
            if step == "expire":
                cur = report()
                due = cur.archive_expire_after_ms or 0
                wait_s = (due - now_ms()) / 1000
                if wait_s > 0:
                    if wait_s > wait_grace_s:
                        return cur  # still running: the grace period has not passed
                    time.sleep(wait_s)
                self._expire(erasure_id, subject)
                self.audit.update(erasure_id, status="done", step="done", finished=True)
                self.audit.forget(erasure_id)
        except Exception as exc:
            self.audit.update(erasure_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        return report()

    def run_pending(self, *, wait_grace_s: float = 0.0, progress: Progress | None = None) -> list[ErasureStatus]:
        """Continue every unfinished erasure (the resume command, the Dagster schedule); one failing
        does not stop the others (its failure is in its audit row)."""
        out = []
        for eid in self.audit.pending():
            try:
                out.append(self.run(eid, wait_grace_s=wait_grace_s, progress=progress))
            except Exception:
                log.exception("erasure %s failed", eid)
                st = self.audit.get(eid)
                if st is not None:
                    out.append(st)
        return out

    def _advance(self, erasure_id: str, step: str) -> str:
        assert step in STEPS
        self.audit.update(erasure_id, step=step)
        return step

    # ------------------------------------------------------------------ steps
    def _out_keys(self, edge_type: str, node_id: str) -> list[str]:
        return list(self.store.kv.item_keys(self.store.edge_table(edge_type, "out"), node_id))

    def _plan(self, erasure_id: str, subject: str) -> None:
        p, spec = self.policy, self.store.spec
        profiles = sorted({k for e in p.owned for k in self._out_keys(e, subject)})
        candidates = sorted({k for e in p.shared for k in self._out_keys(e, subject)})
        devices, kept = [], 0
        for dev in candidates:
            others = any(src != subject for e in p.shared
                         for src in self.store.kv.item_keys(self.store.edge_table(e, "in"), dev))
            if others:
                kept += 1
            else:
                devices.append(dev)
        items: list[tuple[str, str, bool]] = [(p.root, subject, self.store.get_node(p.root, subject) is not None)]
        by_type: dict[str, list[str]] = {}
        for e, ids in ((p.owned, profiles), (p.shared, devices)):
            for ident in ids:
                by_type.setdefault(spec.edges[e[0]].dst, []).append(ident)
        for node_type, ids in by_type.items():
            found = self.store.get_nodes(node_type, ids)
            items += [(node_type, i, i in found) for i in ids]
        self.audit.add_work(erasure_id, items)
        planned = {f"planned.{t}": sum(1 for it in items if it[0] == t) for t in {it[0] for it in items}}
        self.audit.update(erasure_id, counts={**planned, "devices_kept": kept,
                                              "graph_nodes_total": len(items), "graph_nodes_done": 0})

    def _parts(self, node_type: str) -> list[tuple[str, Direction]]:
        """Every (edge type, direction) whose adjacency lists hold edges of a ``node_type`` node."""
        out: list[tuple[str, Direction]] = []
        for name, e in self.store.spec.edges.items():
            if e.src == node_type:
                out.append((name, "out"))
            if e.dst == node_type:
                out.append((name, "in"))
        return out

    def _graph(self, erasure_id: str, ts_ms: int, throttle_s: float,
               report: Callable[[], ErasureStatus] | None) -> None:
        # The root goes last: until then its plan is also readable from the graph.
        work = sorted(self.audit.work(erasure_id), key=lambda w: (w.node_type == self.policy.root, w.node_type))
        done = sum(1 for w in work if "node" in w.parts)
        # Fence first (again on a rerun: idempotent), then wait until every writer has re-read it, so
        # no write issued after the deletes below can bring a fenced node back.
        fenced = self.fence.add(((w.node_type, w.node_id) for w in work), ts_ms)
        self.audit.update(erasure_id, counts={"fenced_nodes": fenced})
        time.sleep(self.fence.propagation_s)
        for w in work:
            if "node" in w.parts:
                continue
            for edge_type, direction in self._parts(w.node_type):
                part = f"{edge_type}:{direction}"
                if part in w.parts:
                    continue
                n = self.store.delete_adjacency(edge_type, w.node_id, direction, ts_ms)
                self.audit.set_part(erasure_id, w.node_type, w.node_id, part, n)
            self.store.delete_node(w.node_type, w.node_id, ts_ms)
            self.audit.set_part(erasure_id, w.node_type, w.node_id, "node", 1)
            done += 1
            self.audit.update(erasure_id, counts={"graph_nodes_done": done})
            if report is not None:
                report()
            if throttle_s > 0:
                time.sleep(throttle_s)
        self.audit.update(erasure_id, counts=graph_counts(self.audit.work(erasure_id)))

    def _archive(self, erasure_id: str, subject: str) -> None:
        cat = self.catalog()
        counts: dict[str, int] = {}
        if cat is not None:
            before = self.audit.get(erasure_id)
            have = before.counts if before else {}
            for topic, table in archive_tables(cat, self.policy.archive_column):
                n = delete_rows(table, self.policy.archive_column, subject, erasure_id)
                key = f"archive_rows.{topic}"
                if n or key not in have:  # a rerun after the delete finds 0: keep the first count
                    counts[key] = n
        due = now_ms() + int(self.archive_grace_s * 1000)
        self.audit.update(erasure_id, counts=counts, archive_expire_after_ms=due)

    def _expire(self, erasure_id: str, subject: str) -> None:
        cat = self.catalog()
        cur = self.audit.get(erasure_id)
        have = cur.counts if cur else {}
        snaps = have.get("archive_snapshots_expired", 0)
        files = have.get("archive_files_deleted", 0)
        again = have.get("archive_rows_deleted_again", 0)
        if cat is not None:
            for _topic, table in archive_tables(cat, self.policy.archive_column):
                r = expire_holding_snapshots(table, self.policy.archive_column, subject, erasure_id)
                snaps += r.snapshots_expired
                files += r.files_deleted
                again += r.rows_deleted_again
                # persisted per table: a rerun after a kill finds those snapshots gone and adds nothing
                self.audit.update(erasure_id, counts={"archive_snapshots_expired": snaps,
                                                      "archive_files_deleted": files,
                                                      "archive_rows_deleted_again": again})


def graph_counts(work: list[WorkItem]) -> dict[str, int]:
    """Audit counts from a finished plan: nodes deleted per type (those that existed when planned) and
    edges deleted per edge type."""
    out: dict[str, int] = {}
    for w in work:
        if w.existed:
            out[f"nodes.{w.node_type}"] = out.get(f"nodes.{w.node_type}", 0) + 1
        for part, n in w.parts.items():
            if part != "node":
                key = "edges." + part.split(":", 1)[0]
                out[key] = out.get(key, 0) + n
    return out
