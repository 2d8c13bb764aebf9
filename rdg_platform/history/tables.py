"""The graph history tables: every graph record ever derived, in Iceberg, one table per node/edge type.

Where the rows come from: the *source* archive (``archive.<topic>``, hourly, per source topic) replayed
through the same compiled mapping the stream runs (:func:`rdg_platform.model.mapping.compile_mapping`,
with the same :class:`~rdg_platform.model.mapping.TimeGuard` judged against each record's archived Kafka
timestamp, and side inputs from the catalog archives as the backfill builds them). Deriving instead of
archiving the ``graph.*`` topics keeps one source of truth (the archive that already refuses to lose
hours to Kafka retention), records every event's update rather than the dedup window's folded ones,
and needs no second archive of ~7 graph records per event.

Layout (what makes one node's adjacency as of T cheap):

- ``<ns>.node_<type>`` and ``<ns>.edge_<type>``; an edge is stored twice, ``direction='out'`` keyed by its
  source and ``direction='in'`` keyed by its destination, so both directions are one key lookup;
- columns ``origin`` (the record id), ``other`` (the other end; ``''`` for nodes), ``direction``,
  ``updated_at`` (event time, ms), ``props`` (the record's properties as one JSON object, the LWW
  encoding), ``ingest_ts`` (the source record's Kafka timestamp) and the source coordinates;
- partitioned by ``day(ingest_ts)``: re-deriving an hour replaces only its rows in one day, and the
  retention drops whole days;
- sort order ``(origin, updated_at)``: every write is sorted so, and :func:`compact` rewrites a day's
  files into one sorted file, so Parquet row-group statistics on ``origin`` let a reader skip all but
  the row groups holding that origin.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import LessThan
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import IntegerType, LongType, NestedField, StringType, TimestamptzType

from rdg_platform.lakehouse.archive import read_archive, ts_range_filter
from rdg_platform.lakehouse.backfill import build_lookup
from rdg_platform.model.mapping import BadEventError, TimeGuard, compile_mapping, to_epoch_ms
from rdg_platform.model.spec import GraphSpec, RecordKind
from rdg_platform.topology import check_identifier

DAY_MS = 86_400_000
# Snapshot summary of a derivation: the window and what it found.
SNAPSHOT_WINDOW_START = "rdg.history.window-start-ms"
SNAPSHOT_EVENTS = "rdg.history.events"
SNAPSHOT_UNMAPPED = "rdg.history.unmapped-events"

SCHEMA = Schema(
    NestedField(1, "origin", StringType(), required=False),
    NestedField(2, "other", StringType(), required=False),
    NestedField(3, "direction", StringType(), required=False),
    NestedField(4, "updated_at", LongType(), required=False),
    NestedField(5, "props", StringType(), required=False),
    NestedField(6, "ingest_ts", TimestamptzType(), required=False),
    NestedField(7, "source_topic", StringType(), required=False),
    NestedField(8, "source_partition", IntegerType(), required=False),
    NestedField(9, "source_offset", LongType(), required=False),
)
ARROW_SCHEMA = SCHEMA.as_arrow()
PARTITION_SPEC = PartitionSpec(PartitionField(6, 1000, DayTransform(), "ingest_day"))
SORT_ORDER = SortOrder(SortField(1, IdentityTransform()), SortField(4, IdentityTransform()))
SORT_KEYS = [("origin", "ascending"), ("updated_at", "ascending")]
TABLE_PROPERTIES = {"write.parquet.compression-codec": "zstd",
                    # small row groups: a point lookup reads one of them, not a day's worth of rows
                    "write.parquet.row-group-limit": "20000"}


def table_name(kind: RecordKind, type_: str) -> str:
    """``node_<type>`` / ``edge_<type>`` (checked as an identifier before it reaches the catalog)."""
    return check_identifier(f"{kind}_{type_}")


def identifier(namespace: str, kind: RecordKind, type_: str) -> str:
    return f"{check_identifier(namespace)}.{table_name(kind, type_)}"


def ensure_tables(catalog: Catalog, spec: GraphSpec, namespace: str) -> dict[tuple[RecordKind, str], Table]:
    """Create the history table of every node and edge type the spec has (idempotent)."""
    catalog.create_namespace_if_not_exists(namespace)
    out: dict[tuple[RecordKind, str], Table] = {}
    kinds: list[tuple[RecordKind, str]] = [("node", t) for t in spec.nodes] + [("edge", t) for t in spec.edges]
    for kind, t in kinds:
        out[(kind, t)] = catalog.create_table_if_not_exists(
            identifier(namespace, kind, t), schema=SCHEMA, partition_spec=PARTITION_SPEC, sort_order=SORT_ORDER,
            properties=TABLE_PROPERTIES)
    return out


def load_table(catalog: Catalog, namespace: str, kind: RecordKind, type_: str) -> Table | None:
    try:
        return catalog.load_table(identifier(namespace, kind, type_))
    except NoSuchTableError:
        return None


@dataclass
class DeriveResult:
    """What deriving one window did (the Dagster materialization metadata)."""

    start_ms: int
    end_ms: int
    events: dict[str, int] = field(default_factory=dict)  # archived source rows read, per topic
    unmapped: dict[str, int] = field(default_factory=dict)  # of those, events that gave no record, per topic
    bad: dict[str, int] = field(default_factory=dict)  # by BadEventError reason
    rows: dict[str, int] = field(default_factory=dict)  # history rows written, per table
    expired: int = 0  # records the TimeGuard left out (born expired)


class _Rows:
    """Column lists of one history table's rows, built without per-row dicts."""

    __slots__ = ("cols",)

    def __init__(self) -> None:
        self.cols: tuple[list[Any], ...] = tuple([] for _ in range(9))

    def add(self, origin: str, other: str, direction: str, ts: int, props: str, ingest_us: int, topic: str,
            partition: int, offset: int) -> None:
        c = self.cols
        c[0].append(origin)
        c[1].append(other)
        c[2].append(direction)
        c[3].append(ts)
        c[4].append(props)
        c[5].append(ingest_us)
        c[6].append(topic)
        c[7].append(partition)
        c[8].append(offset)

    def to_arrow(self) -> pa.Table:
        arrays = [pa.array(col, type=f.type) if i != 5 else pa.array(col, type=pa.int64()).cast(f.type)
                  for i, (col, f) in enumerate(zip(self.cols, ARROW_SCHEMA, strict=True))]
        return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA).sort_by(SORT_KEYS)


def _props_json(props: Mapping[str, Any]) -> str:
    return orjson.dumps({k: v for k, v in props.items() if v is not None}, option=orjson.OPT_SORT_KEYS).decode()


def derive_rows(spec: GraphSpec, archived: Iterable[tuple[str, pa.Table]], lookup: Any,
                guard: TimeGuard, res: DeriveResult) -> dict[tuple[RecordKind, str], pa.Table]:
    """Map archived source rows (per topic) to history rows per (kind, type), counting into ``res``."""
    rows: dict[tuple[RecordKind, str], _Rows] = {}
    bad: Counter[str] = Counter()
    for topic, data in archived:
        mapper = compile_mapping(spec, topic)
        events = [c for c in data.column_names if not c.startswith("kafka_") and c != "schema_id"]
        cols = {c: data.column(c).to_pylist() for c in events}
        ingest = data.column("kafka_ts").to_pylist()
        parts = data.column("kafka_partition").to_pylist()
        offs = data.column("kafka_offset").to_pylist()
        res.events[topic] = res.events.get(topic, 0) + data.num_rows
        unmapped = 0
        for i in range(data.num_rows):
            ev = {c: cols[c][i] for c in events}
            ref = to_epoch_ms(ingest[i])
            try:
                if mapper.check(ev) is not None:
                    unmapped += 1
                    continue
                live, expired = mapper.guarded_rows(ev, lookup, ref, guard, checked=True)
            except BadEventError as exc:
                bad[exc.reason] += 1
                unmapped += 1
                continue
            res.expired += len(expired)
            if not live:
                unmapped += 1
                continue
            ingest_us = ref * 1000
            for _key, kind, type_, rid, dst, props, ts in live:
                out = rows.get((kind, type_))
                if out is None:
                    out = rows[(kind, type_)] = _Rows()
                pj = _props_json(props)
                if kind == "node":
                    out.add(rid, "", "out", ts, pj, ingest_us, topic, parts[i], offs[i])
                else:
                    out.add(rid, dst or "", "out", ts, pj, ingest_us, topic, parts[i], offs[i])
                    out.add(dst or "", rid, "in", ts, pj, ingest_us, topic, parts[i], offs[i])
        res.unmapped[topic] = res.unmapped.get(topic, 0) + unmapped
    for reason, n in bad.items():
        res.bad[reason] = res.bad.get(reason, 0) + n
    return {k: r.to_arrow() for k, r in rows.items()}


def derive_window(catalog: Catalog, spec: GraphSpec, start_ms: int, end_ms: int, *, namespace: str,
                  archive_namespace: str = "archive", guard: TimeGuard | None = None,
                  archived_as: Mapping[str, str] | None = None) -> DeriveResult:
    """Replace the history rows whose source records were archived in [start, end) with a fresh
    derivation of that window (idempotent: one overwrite per table, filtered on ``ingest_ts``).

    ``archived_as`` maps a source topic of the spec to the topic whose archive holds its records
    (default: itself); a test archiving a private topic maps ``member.login`` to it."""
    res = DeriveResult(start_ms, end_ms)
    tables = ensure_tables(catalog, spec, namespace)
    lookup = build_lookup(catalog, spec, end_ms)
    alias = archived_as or {}
    archived = [(t, read_archive(catalog, alias.get(t, t), start_ms, end_ms, archive_namespace)) for t in spec.mappings]
    derived = derive_rows(spec, ((t, d) for t, d in archived if d.num_rows), lookup, guard or TimeGuard(), res)
    flt = ts_range_filter(start_ms, end_ms, "ingest_ts")
    props = {SNAPSHOT_WINDOW_START: str(start_ms), SNAPSHOT_EVENTS: json.dumps(res.events, sort_keys=True),
             SNAPSHOT_UNMAPPED: json.dumps(res.unmapped, sort_keys=True)}
    for key, table in sorted(tables.items()):
        data = derived.get(key)
        if data is None:
            if _has_rows(table, start_ms, end_ms):
                table.delete(delete_filter=flt, snapshot_properties=props)
            continue
        if _has_rows(table, start_ms, end_ms):
            table.overwrite(data, overwrite_filter=flt, snapshot_properties=props)
        else:  # a first derivation: an append (an overwrite would plan a delete over the day's files)
            table.append(data, snapshot_properties=props)
        res.rows[table_name(*key)] = data.num_rows
    return res


def _has_rows(table: Table, start_ms: int, end_ms: int) -> bool:
    if table.current_snapshot() is None:
        return False
    return bool(table.scan(row_filter=ts_range_filter(start_ms, end_ms, "ingest_ts"),
                           selected_fields=("source_offset",), limit=1).to_arrow().num_rows)


def window_counts(table: Table, start_ms: int, end_ms: int) -> tuple[int, set[tuple[str, int, int]]]:
    """History rows of [start, end) and the distinct source records (topic, partition, offset) they came from."""
    data = table.scan(row_filter=ts_range_filter(start_ms, end_ms, "ingest_ts"),
                      selected_fields=("source_topic", "source_partition", "source_offset")).to_arrow()
    src = set(zip(data.column("source_topic").to_pylist(), data.column("source_partition").to_pylist(),
                  data.column("source_offset").to_pylist(), strict=True))
    return data.num_rows, src


@dataclass
class CompactResult:
    days: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0


def _files_per_day(table: Table) -> Counter[int]:
    per: Counter[int] = Counter()
    if table.current_snapshot() is None:
        return per
    for task in table.scan().plan_files():
        per[int(task.file.partition[0])] += 1
    return per


def compact(table: Table, min_files: int = 2) -> CompactResult:
    """Rewrite every day holding ``min_files`` or more data files as one file sorted by (origin, updated_at)."""
    res = CompactResult()
    table.refresh()  # the table's current files, not those of when it was loaded
    per_day = _files_per_day(table)
    res.files_before = sum(per_day.values())
    for day, n in sorted(per_day.items()):
        if n < min_files:
            continue
        flt = ts_range_filter(day * DAY_MS, (day + 1) * DAY_MS, "ingest_ts")
        data = table.scan(row_filter=flt).to_arrow().sort_by(SORT_KEYS)
        table.overwrite(data, overwrite_filter=flt)
        res.days += 1
        res.rows += data.num_rows
    table.refresh()
    res.files_after = sum(_files_per_day(table).values())
    return res


def drop_older_than(table: Table, retention: timedelta, now: datetime | None = None) -> int:
    """Delete history rows ingested before ``now - retention`` (whole days). Returns rows deleted."""
    cutoff = ((now or datetime.now(tz=UTC)) - retention).replace(hour=0, minute=0, second=0, microsecond=0)
    flt = LessThan("ingest_ts", cutoff.isoformat())  # type: ignore[call-arg,misc,arg-type]
    if table.current_snapshot() is None:
        return 0
    n = table.scan(row_filter=flt, selected_fields=("source_offset",)).to_arrow().num_rows
    if n:
        table.delete(delete_filter=flt)
    return n


def check_retention(spec: GraphSpec, retention_days: int) -> None:
    """Raise ValueError when the history would drop rows before the longest namespace TTL ends: an
    ``include_expired`` read must find every edge the live graph has ever expired, for a while."""
    longest = max((ns.ttl_s for ns in spec.namespaces.values()), default=0)
    if longest and retention_days * 86_400 <= longest:
        raise ValueError(f"RDG_HISTORY_RETENTION_DAYS={retention_days} is not longer than the longest namespace TTL "
                         f"({longest / 86_400:g} days); set it above that")


__all__ = ["ARROW_SCHEMA", "SCHEMA", "CompactResult", "DeriveResult", "check_retention", "compact",
           "derive_rows", "derive_window", "drop_older_than", "ensure_tables", "identifier", "load_table",
           "table_name", "window_counts"]
