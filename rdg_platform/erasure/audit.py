"""The erasure's Cassandra tables: the audit trail (kept) and the working state of unfinished erasures.

Three tables in the keyspace of the root node type's namespace (the graph keyspace), created by
:func:`ensure_erasure_schema` (DDL, so an admin entry point: ``rdg erase``, the Dagster job, tests):

- ``erasure_audit``, one row per erasure, kept for good: what kind of subject, when it was erased (the
  erasure time, which is also the timestamp of every delete), the current step and status, and counts
  (nodes, edges, archive rows, snapshots and files). It holds **no personal data**: not the id, not a
  hash of it; the erasure id is a random UUID.
- ``erasure_work``: the plan of an unfinished erasure (the subject's id as a static column, and one row
  per node to delete with the parts already done and their counts), so a run killed at any point
  continues where it stopped. The partition is deleted when the erasure is done: the ids live only for
  as long as the erasure runs (or stays failed, waiting for a rerun).
- ``erasure_pending``: the ids of unfinished erasures (one small partition), what ``rdg erase resume``
  and the Dagster schedule walk.

Statements are prepared with bound values; the keyspace reaches the CQL through
:func:`rdg_platform.topology.check_identifier`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cassandra.cluster import Session
from cassandra.query import PreparedStatement

from rdg_platform.topology import check_identifier

Status = Literal["pending", "running", "done", "failed"]
STEPS: tuple[str, ...] = ("plan", "graph", "archive", "expire", "done")
AUDIT_TABLE = "erasure_audit"
WORK_TABLE = "erasure_work"
PENDING_TABLE = "erasure_pending"
_BUCKET = 0  # erasure_pending has one partition: unfinished erasures are few

_DDL = (
    "CREATE TABLE IF NOT EXISTS {ks}.erasure_audit (erasure_id text PRIMARY KEY, subject_type text, "
    "status text, step text, erasure_time_ms bigint, requested_at_ms bigint, updated_at_ms bigint, "
    "finished_at_ms bigint, archive_expire_after_ms bigint, counts map<text, bigint>, error text)",
    "CREATE TABLE IF NOT EXISTS {ks}.erasure_work (erasure_id text, node_type text, node_id text, "
    "subject text static, existed boolean, parts map<text, bigint>, "
    "PRIMARY KEY ((erasure_id), node_type, node_id))",
    "CREATE TABLE IF NOT EXISTS {ks}.erasure_pending (bucket int, erasure_id text, "
    "PRIMARY KEY ((bucket), erasure_id))",
)


class ErasureTablesMissing(RuntimeError):
    """The erasure tables do not exist yet (an admin entry point creates them)."""


def ensure_erasure_schema(session: Session, keyspace: str) -> None:
    """Create the three erasure tables in ``keyspace`` if absent (needs a role that may run DDL)."""
    ks = check_identifier(keyspace, "keyspace")
    for ddl in _DDL:
        session.execute(ddl.format(ks=ks))


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ErasureStatus:
    """One erasure as the audit table records it (what ``GET /v1/erasures/{id}`` returns)."""

    erasure_id: str
    subject_type: str
    status: Status
    step: str
    erasure_time_ms: int
    requested_at_ms: int
    updated_at_ms: int
    finished_at_ms: int | None = None
    archive_expire_after_ms: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"erasure_id": self.erasure_id, "type": self.subject_type, "status": self.status,
                "step": self.step, "erasure_time_ms": self.erasure_time_ms,
                "requested_at_ms": self.requested_at_ms, "updated_at_ms": self.updated_at_ms,
                "finished_at_ms": self.finished_at_ms, "archive_expire_after_ms": self.archive_expire_after_ms,
                "counts": dict(sorted(self.counts.items())), "error": self.error}


@dataclass(frozen=True)
class WorkItem:
    """One node of an erasure's plan: whether it existed when planned, and the parts done so far
    (``<edge_type>:out`` / ``<edge_type>:in`` -> edges deleted, ``node`` -> 1 once its record is gone)."""

    node_type: str
    node_id: str
    existed: bool
    parts: Mapping[str, int]


class AuditLog:
    """Reads and writes the erasure tables of one keyspace (see the module docstring)."""

    def __init__(self, session: Session, keyspace: str) -> None:
        self.session = session
        self.keyspace = check_identifier(keyspace, "keyspace")
        self._ps: dict[str, PreparedStatement] = {}

    def _p(self, cql: str) -> PreparedStatement:
        ps = self._ps.get(cql)
        if ps is None:
            try:
                ps = self.session.prepare(cql.format(ks=self.keyspace))
            except Exception as exc:
                if "unconfigured table" in str(exc).lower() or "does not exist" in str(exc).lower():
                    raise ErasureTablesMissing(
                        f"the erasure tables are missing in keyspace {self.keyspace!r}: run `rdg erase setup` "
                        "(as the admin role) or any `rdg erase account` once") from exc
                raise
            self._ps[cql] = ps
        return ps

    def ensure_schema(self) -> None:
        ensure_erasure_schema(self.session, self.keyspace)

    def tables_exist(self) -> bool:
        """Whether the erasure tables exist (a cheap schema-metadata read, no DDL)."""
        row = self.session.execute(self._p(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?"),
            (self.keyspace, AUDIT_TABLE)).one()
        return row is not None

    # ------------------------------------------------------------------ audit
    def create(self, erasure_id: str, subject_type: str, subject_id: str, erasure_time_ms: int) -> ErasureStatus:
        """Record a new erasure (status pending, step plan), its subject in the work table and its id in
        the pending list."""
        t = now_ms()
        self.session.execute(self._p(
            "INSERT INTO {ks}.erasure_audit (erasure_id, subject_type, status, step, erasure_time_ms, "
            "requested_at_ms, updated_at_ms, counts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            (erasure_id, subject_type, "pending", STEPS[0], erasure_time_ms, t, t, {}))
        self.session.execute(self._p("UPDATE {ks}.erasure_work SET subject = ? WHERE erasure_id = ?"),
                             (subject_id, erasure_id))
        self.session.execute(self._p("INSERT INTO {ks}.erasure_pending (bucket, erasure_id) VALUES (?, ?)"),
                             (_BUCKET, erasure_id))
        return ErasureStatus(erasure_id, subject_type, "pending", STEPS[0], erasure_time_ms, t, t)

    def get(self, erasure_id: str) -> ErasureStatus | None:
        row = self.session.execute(self._p(
            "SELECT subject_type, status, step, erasure_time_ms, requested_at_ms, updated_at_ms, finished_at_ms, "
            "archive_expire_after_ms, counts, error FROM {ks}.erasure_audit WHERE erasure_id = ?"),
            (erasure_id,)).one()
        if row is None:
            return None
        return ErasureStatus(erasure_id, row[0], row[1], row[2], int(row[3] or 0), int(row[4] or 0), int(row[5] or 0),
                             row[6], row[7], {k: int(v) for k, v in (row[8] or {}).items()}, row[9])

    def update(self, erasure_id: str, *, status: Status | None = None, step: str | None = None,
               counts: Mapping[str, int] | None = None, error: str | None = None, clear_error: bool = False,
               archive_expire_after_ms: int | None = None, finished: bool = False) -> None:
        """Set the given fields (counts are merged key by key into the stored map)."""
        sets: list[str] = ["updated_at_ms = ?"]
        vals: list[Any] = [now_ms()]
        if status is not None:
            sets.append("status = ?")
            vals.append(status)
        if step is not None:
            sets.append("step = ?")
            vals.append(step)
        if counts:
            sets.append("counts = counts + ?")
            vals.append(dict(counts))
        if error is not None or clear_error:
            sets.append("error = ?")
            vals.append(error)
        if archive_expire_after_ms is not None:
            sets.append("archive_expire_after_ms = ?")
            vals.append(archive_expire_after_ms)
        if finished:
            sets.append("finished_at_ms = ?")
            vals.append(now_ms())
        # A fixed set of column names (never input) -> one prepared statement per combination.
        cql = "UPDATE {ks}.erasure_audit SET " + ", ".join(sets) + " WHERE erasure_id = ?"  # noqa: S608
        self.session.execute(self._p(cql),
                             (*vals, erasure_id))

    # ------------------------------------------------------------------ work
    def subject(self, erasure_id: str) -> str | None:
        row = self.session.execute(self._p("SELECT subject FROM {ks}.erasure_work WHERE erasure_id = ? LIMIT 1"),
                                   (erasure_id,)).one()
        return None if row is None else row[0]

    def add_work(self, erasure_id: str, items: list[tuple[str, str, bool]]) -> None:
        ps = self._p("INSERT INTO {ks}.erasure_work (erasure_id, node_type, node_id, existed) VALUES (?, ?, ?, ?)")
        for node_type, node_id, existed in items:
            self.session.execute(ps, (erasure_id, node_type, node_id, existed))

    def work(self, erasure_id: str) -> list[WorkItem]:
        rows = self.session.execute(self._p(
            "SELECT node_type, node_id, existed, parts FROM {ks}.erasure_work WHERE erasure_id = ?"), (erasure_id,))
        return [WorkItem(r[0], r[1], bool(r[2]), dict(r[3] or {})) for r in rows if r[0] is not None]

    def set_part(self, erasure_id: str, node_type: str, node_id: str, part: str, count: int) -> None:
        self.session.execute(self._p(
            "UPDATE {ks}.erasure_work SET parts = parts + ? WHERE erasure_id = ? AND node_type = ? AND node_id = ?"),
            ({part: count}, erasure_id, node_type, node_id))

    def forget(self, erasure_id: str) -> None:
        """Drop the erasure's working state (the ids) and its pending entry; the audit row stays."""
        self.session.execute(self._p("DELETE FROM {ks}.erasure_work WHERE erasure_id = ?"), (erasure_id,))
        self.session.execute(self._p("DELETE FROM {ks}.erasure_pending WHERE bucket = ? AND erasure_id = ?"),
                             (_BUCKET, erasure_id))

    def pending(self) -> list[str]:
        """Ids of the erasures not done yet (pending, running, waiting for the archive grace, failed)."""
        rows = self.session.execute(self._p("SELECT erasure_id FROM {ks}.erasure_pending WHERE bucket = ?"),
                                    (_BUCKET,))
        return [r[0] for r in rows]
