"""Archive one topic-hour from Kafka into its Iceberg table, replacing what was there.

Idempotence: the hour's rows are written with ``overwrite(overwrite_filter=<kafka_ts in hour>)``: one
Iceberg commit that deletes the hour's old files (whole files, since the table is partitioned by
hour(kafka_ts)) and adds the new ones, so re-archiving an hour never duplicates and readers see the
old or the new hour, never a mix. Undecodable records are counted by reason and skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, LessThan
from pyiceberg.table import Table

from rdg_platform.lakehouse.catalog import ARCHIVE_NAMESPACE
from rdg_platform.lakehouse.kafka_window import WindowRead, WindowRecord
from rdg_platform.lakehouse.schema import (
    archive_schema,
    hour_partition_spec,
    rows_to_arrow,
    table_name_for_topic,
)

Decoder = Callable[[bytes], tuple[int, dict[str, Any]]]
WriterSchemaLookup = Callable[[int], Mapping[str, Any] | None]


@dataclass
class ArchiveResult:
    """What one archive run did (becomes the Dagster materialization metadata)."""

    topic: str
    table: str
    start_ms: int
    end_ms: int
    rows: int = 0
    undecodable: dict[str, int] = field(default_factory=dict)
    offset_ranges: dict[str, Any] = field(default_factory=dict)
    bytes_read: int = 0
    bytes_written: int = 0
    files_written: int = 0
    scanned: int = 0
    added_columns: list[str] = field(default_factory=list)
    snapshot_id: int | None = None

    @property
    def undecodable_total(self) -> int:
        return sum(self.undecodable.values())


def archive_identifier(topic: str, namespace: str = ARCHIVE_NAMESPACE) -> str:
    return f"{namespace}.{table_name_for_topic(topic)}"


def ts_range_filter(start_ms: int, end_ms: int, column: str = "kafka_ts") -> BooleanExpression:
    """``start <= column < end`` as an Iceberg expression (ISO literals bind to timestamptz)."""
    s = datetime.fromtimestamp(start_ms / 1000, tz=UTC).isoformat()
    e = datetime.fromtimestamp(end_ms / 1000, tz=UTC).isoformat()
    # (pyiceberg's predicate classes take (term, literal) positionally; their pydantic stubs say otherwise)
    return And(GreaterThanOrEqual(column, s), LessThan(column, e))  # type: ignore[call-arg,misc,arg-type]


def ensure_archive_table(catalog: Catalog, topic: str, avro_schema: Mapping[str, Any],
                         namespace: str = ARCHIVE_NAMESPACE) -> tuple[Table, list[str]]:
    """Create the topic's table if absent, else evolve it to include ``avro_schema``'s fields.

    Returns the table and the columns added now (schema evolution by name: new Avro fields become
    new optional columns; nothing is ever dropped or retyped).
    """
    catalog.create_namespace_if_not_exists(namespace)
    ident = archive_identifier(topic, namespace)
    wanted = archive_schema(avro_schema)
    try:
        table = catalog.load_table(ident)
    except NoSuchTableError:
        table = catalog.create_table_if_not_exists(
            ident, schema=wanted, partition_spec=hour_partition_spec(wanted),
            properties={"write.parquet.compression-codec": "zstd", "rdg.source-topic": topic})
        return table, []
    return table, evolve_table(table, avro_schema)


def evolve_table(table: Table, avro_schema: Mapping[str, Any]) -> list[str]:
    have = {f.name for f in table.schema().fields}
    wanted = archive_schema(avro_schema)
    missing = [f.name for f in wanted.fields if f.name not in have]
    if missing:
        with table.update_schema() as upd:
            upd.union_by_name(wanted)
    return missing


def archive_records(catalog: Catalog, topic: str, avro_schema: Mapping[str, Any], decode: Decoder,
                    batches: Iterable[list[WindowRecord]], start_ms: int, end_ms: int, *,
                    decode_errors: tuple[type[BaseException], ...] = (ValueError,),
                    writer_schema: WriterSchemaLookup | None = None, window: WindowRead | None = None,
                    namespace: str = ARCHIVE_NAMESPACE) -> ArchiveResult:
    """Decode ``batches`` (records of one window) and replace the window in the topic's table.

    ``writer_schema(schema_id)`` returns the registry's Avro schema for an id; a writer schema with
    fields the table lacks evolves the table before the write. ``window`` is the reader's
    :class:`WindowRead`, whose offsets and byte counts are copied into the result.
    """
    table, added = ensure_archive_table(catalog, topic, avro_schema, namespace)
    res = ArchiveResult(topic, archive_identifier(topic, namespace), start_ms, end_ms, added_columns=added)
    bad: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    seen_ids: set[int] = set()
    for batch in batches:
        for rec in batch:
            if rec.value is None:
                bad["tombstone"] += 1
                continue
            try:
                schema_id, event = decode(rec.value)
            except decode_errors as exc:
                bad[str(getattr(exc, "reason", type(exc).__name__))] += 1
                continue
            if schema_id not in seen_ids:
                seen_ids.add(schema_id)
                ws = writer_schema(schema_id) if writer_schema is not None else None
                if ws is not None:
                    res.added_columns += evolve_table(table, ws)
            row = dict(event)
            row["kafka_topic"] = topic
            row["kafka_partition"] = rec.partition
            row["kafka_offset"] = rec.offset
            row["kafka_ts"] = rec.timestamp_ms  # epoch ms; rows_to_arrow converts the column at once
            row["kafka_key"] = None if rec.key is None else rec.key.decode("utf-8", "replace")
            row["schema_id"] = schema_id
            rows.append(row)
    if res.added_columns:
        table = catalog.load_table(res.table)
    res.rows = len(rows)
    res.undecodable = dict(bad)
    res.snapshot_id, res.bytes_written, res.files_written = replace_window(
        table, rows_to_arrow(rows, table.schema()), start_ms, end_ms)
    if window is not None:
        res.offset_ranges = window.offset_ranges()
        res.bytes_read = window.bytes_read
        res.scanned = window.scanned
    return res


def replace_window(table: Table, data: pa.Table, start_ms: int, end_ms: int) -> tuple[int | None, int, int]:
    """Atomically replace the rows of [start, end) with ``data``. Returns (snapshot id, bytes, files)."""
    flt = ts_range_filter(start_ms, end_ms)
    if data.num_rows:
        table.overwrite(data, overwrite_filter=flt)
    else:
        table.delete(delete_filter=flt)
    table.refresh()
    snap = table.current_snapshot()
    if snap is None:
        return None, 0, 0
    summary = snap.summary.additional_properties if snap.summary is not None else {}
    return snap.snapshot_id, int(summary.get("added-files-size", 0)), int(summary.get("added-data-files", 0))


def read_archive(catalog: Catalog, topic: str, start_ms: int | None = None, end_ms: int | None = None,
                 namespace: str = ARCHIVE_NAMESPACE) -> pa.Table:
    """The archived rows of ``topic`` in [start, end) (all of them when unbounded); empty if absent."""
    try:
        table = catalog.load_table(archive_identifier(topic, namespace))
    except NoSuchTableError:
        return pa.table({})
    if start_ms is None and end_ms is None:
        return table.scan().to_arrow()
    lo = start_ms if start_ms is not None else 0
    hi = end_ms if end_ms is not None else 2**53
    return table.scan(row_filter=ts_range_filter(lo, hi)).to_arrow()
