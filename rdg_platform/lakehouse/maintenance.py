"""Maintenance of the lakehouse (Iceberg) and of the graph namespaces (Cassandra).

Iceberg: expire old snapshots (keeping the newest few, so time travel and concurrent readers still
work), compact partitions with many small files (each hour's files rewritten as one by an
``overwrite`` filtered on that hour: one atomic commit, data unchanged), drop archive hours older
than the retention, and delete orphan files (under a table's location, referenced by no remaining
snapshot or metadata file, e.g. data files of expired snapshots) older than a safety age.
Cassandra: make every namespace table's ``default_time_to_live`` and compaction match the spec
(ALTER only what differs: idempotent), and report TTL/tombstone health.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cassandra.cluster import Session
from pyarrow.fs import FileSelector, FileType
from pyiceberg.expressions import LessThan
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Table

from rdg_platform.lakehouse.archive import replace_window
from rdg_platform.model.spec import Namespace

HOUR_MS = 3_600_000


# ------------------------------------------------------------------------------------ Iceberg
def expire_snapshots(table: Table, keep_last: int = 5, older_than: timedelta = timedelta(hours=1)) -> int:
    """Expire snapshots older than ``older_than`` except the newest ``keep_last``. Returns how many."""
    snaps = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    if len(snaps) <= keep_last:
        return 0
    cutoff = int((datetime.now(tz=UTC) - older_than).timestamp() * 1000)
    current = table.current_snapshot()
    victims = [s.snapshot_id for s in snaps[:-keep_last] if s.timestamp_ms < cutoff
               and (current is None or s.snapshot_id != current.snapshot_id)]
    if victims:
        table.maintenance.expire_snapshots().by_ids(victims).commit()
    return len(victims)


def data_files_per_hour(table: Table) -> Counter[int]:
    """Number of live data files per hour partition (hours since the epoch)."""
    files = table.inspect.files()
    out: Counter[int] = Counter()
    if files.num_rows == 0:
        return out
    for p in files.column("partition").to_pylist():
        out[int((p or {}).get("kafka_ts_hour") or 0)] += 1
    return out


@dataclass
class CompactionResult:
    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0


def compact_small_files(table: Table, min_files: int = 2) -> CompactionResult:
    """Rewrite each hour partition that has >= ``min_files`` data files into one file."""
    from rdg_platform.lakehouse.archive import ts_range_filter

    res = CompactionResult()
    per_hour = data_files_per_hour(table)
    res.files_before = sum(per_hour.values())
    for hour, n in sorted(per_hour.items()):
        if n < min_files:
            continue
        lo, hi = hour * HOUR_MS, (hour + 1) * HOUR_MS
        data = table.scan(row_filter=ts_range_filter(lo, hi)).to_arrow()
        if "kafka_partition" in data.column_names:
            data = data.sort_by([("kafka_partition", "ascending"), ("kafka_offset", "ascending")])
        replace_window(table, data, lo, hi)
        res.partitions += 1
        res.rows += data.num_rows
    table.refresh()
    res.files_after = sum(data_files_per_hour(table).values())
    return res


def drop_older_than(table: Table, retention: timedelta, now: datetime | None = None) -> int:
    """Delete archive rows whose Kafka timestamp is older than ``retention`` (whole hours: metadata-only
    deletes of whole files). Returns the number of rows deleted."""
    cutoff = (now or datetime.now(tz=UTC)) - retention
    cutoff = cutoff.replace(minute=0, second=0, microsecond=0)
    flt = LessThan("kafka_ts", cutoff.isoformat())  # type: ignore[call-arg,misc,arg-type]
    n = table.scan(row_filter=flt, selected_fields=("kafka_offset",)).to_arrow().num_rows
    if n:
        table.delete(delete_filter=flt)
    return n


@dataclass
class OrphanFilesResult:
    """Files under a table's location that no snapshot or metadata file references."""

    files_scanned: int = 0
    referenced: int = 0
    deleted: list[str] = field(default_factory=list)  # or, in a dry run, that would be deleted
    bytes_deleted: int = 0
    kept_too_recent: int = 0  # unreferenced but younger than the safety age (maybe a write in flight)


def _location_path(location: str) -> str:
    """A location as the table's pyarrow filesystem names it (``/abs/path`` locally, ``bucket/key`` on
    S3), so URIs from metadata and paths from a listing compare equal."""
    return PyArrowFileIO.parse_location(location)[2]


def referenced_files(table: Table) -> set[str]:
    """Every file the table's current metadata can reach: metadata files (current and logged),
    manifest lists, manifests and data/delete files of *all* remaining snapshots, statistics files."""
    meta = table.metadata
    refs = {table.metadata_location, *(e.metadata_file for e in meta.metadata_log)}
    refs |= {s.manifest_list for s in table.snapshots() if s.manifest_list}
    refs |= {st.statistics_path for st in meta.statistics}
    refs |= {st.statistics_path for st in meta.partition_statistics}
    if table.snapshots():
        refs |= set(table.inspect.all_manifests().column("path").to_pylist())
        refs |= set(table.inspect.all_files().column("file_path").to_pylist())
    return {_location_path(r) for r in refs}


def remove_orphan_files(table: Table, older_than: timedelta = timedelta(days=3), *, now: datetime | None = None,
                        dry_run: bool = False) -> OrphanFilesResult:
    """Delete files under the table's location that no remaining snapshot or metadata references
    (data files of expired snapshots, superseded metadata, leftovers of failed writes).

    pyiceberg 0.12 has no orphan-file action (``Table.maintenance`` only expires snapshots, and
    expiring does not delete files), so this lists the location with the table's own pyarrow
    filesystem and diffs it against :func:`referenced_files`. The listing is taken *before* the
    references are read, so a file committed in between counts as referenced; files younger than
    ``older_than`` are never deleted, because a writer that has written but not yet committed them
    would otherwise lose them (Iceberg's own DeleteOrphanFiles defaults to 3 days for that reason).
    """
    io = table.io
    if not isinstance(io, PyArrowFileIO):
        raise TypeError(f"orphan-file cleanup needs pyiceberg's PyArrowFileIO, the table uses {type(io).__name__}")
    scheme, netloc, root = PyArrowFileIO.parse_location(table.location())
    fs = io.fs_by_scheme(scheme, netloc)
    listing = [f for f in fs.get_file_info(FileSelector(root, recursive=True, allow_not_found=True))
               if f.type == FileType.File]
    table.refresh()
    refs = referenced_files(table)
    cutoff = (now or datetime.now(tz=UTC)) - older_than
    res = OrphanFilesResult(files_scanned=len(listing))
    for info in listing:
        if info.path in refs:
            res.referenced += 1
            continue
        mtime = info.mtime
        if mtime is None or (mtime if mtime.tzinfo else mtime.replace(tzinfo=UTC)) >= cutoff:
            res.kept_too_recent += 1
            continue
        res.deleted.append(info.path)
        res.bytes_deleted += int(info.size or 0)
        if not dry_run:
            fs.delete_file(info.path)
    return res


# ---------------------------------------------------------------------------------- Cassandra
_COMPACTION_PREFIX = "org.apache.cassandra.db.compaction."


def compaction_options(ns: Namespace) -> dict[str, str]:
    """The compaction map for a namespace: TWCS windows sized so a TTL spans ~30 windows."""
    cls = ns.compaction
    opts = {"class": cls}
    if cls.endswith("TimeWindowCompactionStrategy"):
        days = max(1, ns.ttl_s // 86400 // 30) if ns.ttl_s else 1
        opts.update({"compaction_window_unit": "DAYS", "compaction_window_size": str(days)})
    return opts


def _short(cls: str) -> str:
    return cls[len(_COMPACTION_PREFIX):] if cls.startswith(_COMPACTION_PREFIX) else cls


def current_table_settings(session: Session, keyspace: str, table: str) -> dict[str, Any] | None:
    row = session.execute(
        session.prepare("SELECT default_time_to_live, compaction, gc_grace_seconds FROM system_schema.tables "
                        "WHERE keyspace_name = ? AND table_name = ?"), (keyspace, table)).one()
    if row is None:
        return None
    return {"default_time_to_live": int(row[0] or 0), "compaction": dict(row[1] or {}),
            "gc_grace_seconds": int(row[2] or 0)}


@dataclass
class TableSettingsChange:
    table: str
    changed: list[str] = field(default_factory=list)
    missing: bool = False


def apply_namespace_settings(session: Session, ns: Namespace, tables: Sequence[str] | None = None) -> list[TableSettingsChange]:
    """ALTER the namespace's tables whose TTL or compaction differ from the spec; no-op otherwise."""
    out = []
    want = compaction_options(ns)
    for table in tables or ns.tables:
        cur = current_table_settings(session, ns.keyspace, table)
        ch = TableSettingsChange(f"{ns.keyspace}.{table}")
        if cur is None:
            ch.missing = True
            out.append(ch)
            continue
        clauses = []
        if cur["default_time_to_live"] != ns.ttl_s:
            clauses.append(f"default_time_to_live = {int(ns.ttl_s)}")
            ch.changed.append(f"ttl {cur['default_time_to_live']} -> {ns.ttl_s}")
        have = cur["compaction"]
        same = _short(have.get("class", "")) == _short(want["class"]) and all(
            have.get(k) == v for k, v in want.items() if k != "class")
        if not same:
            opts = ", ".join(f"'{k}': '{v}'" for k, v in want.items())
            clauses.append(f"compaction = {{{opts}}}")
            ch.changed.append(f"compaction {_short(have.get('class', '?'))} -> {_short(want['class'])}")
        if clauses:
            session.execute(f"ALTER TABLE {ns.keyspace}.{table} WITH " + " AND ".join(clauses))
        out.append(ch)
    return out


@dataclass
class TableHealth:
    table: str
    ttl_ok: bool
    compaction_ok: bool
    default_time_to_live: int | None
    expected_ttl: int
    compaction: str | None
    tombstones_p99: float | None = None
    tombstones_max: float | None = None
    problems: list[str] = field(default_factory=list)


def table_health(session: Session, ns: Namespace, table: str, max_tombstones_p99: float = 1000.0) -> TableHealth:
    """TTL/compaction drift from the spec, and tombstones scanned per read (``system_views``)."""
    cur = current_table_settings(session, ns.keyspace, table)
    if cur is None:
        return TableHealth(f"{ns.keyspace}.{table}", False, False, None, ns.ttl_s, None, problems=["table missing"])
    want = compaction_options(ns)
    cls = _short(cur["compaction"].get("class", ""))
    h = TableHealth(f"{ns.keyspace}.{table}", cur["default_time_to_live"] == ns.ttl_s,
                    cls == _short(want["class"]), cur["default_time_to_live"], ns.ttl_s, cls)
    if not h.ttl_ok:
        h.problems.append(f"default_time_to_live {cur['default_time_to_live']} != spec {ns.ttl_s}")
    if not h.compaction_ok:
        h.problems.append(f"compaction {cls} != spec {_short(want['class'])}")
    try:
        row = session.execute(
            session.prepare("SELECT p99th, max FROM system_views.tombstones_per_read "
                            "WHERE keyspace_name = ? AND table_name = ?"), (ns.keyspace, table)).one()
    except Exception:  # virtual table absent (older Cassandra): health is TTL/compaction only
        row = None
    if row is not None:
        h.tombstones_p99 = float(row[0] or 0)
        h.tombstones_max = float(row[1] or 0)
        if h.tombstones_p99 > max_tombstones_p99:
            h.problems.append(f"p99 tombstones per read {h.tombstones_p99:.0f} > {max_tombstones_p99:.0f}")
    if ns.ttl_s == 0 and ns.kind == "edge":
        pass  # catalog edges (based_on) never expire by design
    return h
