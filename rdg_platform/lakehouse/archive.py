"""Archive one topic-hour from Kafka into its Iceberg table, replacing what was there.

Idempotence: the hour's rows are written with ``overwrite(overwrite_filter=<kafka_ts in hour>)``: one
Iceberg commit that deletes the hour's old files (whole files, since the table is partitioned by
hour(kafka_ts)) and adds the new ones, so re-archiving an hour never duplicates and readers see the
old or the new hour, never a mix. Undecodable records are counted by reason and skipped.

Safety: an hour is never replaced by a read that lost records to Kafka's retention. Before replacing,
the hour's archived (partition, offset) ranges are compared with the earliest offset Kafka still
retains: when that is past the hour's first archived offset in any partition, the run is refused
(:class:`ArchiveRefusedError`, naming the hour, the topic's retention and the offsets) and the hour
stays as it is. Each write's snapshot summary records the topic, the window and the per-partition
offset ranges it covers (:data:`SNAPSHOT_OFFSETS`), which the rebuild's Kafka catch-up starts from.

Speed (the issue's target: at least half a raw Iceberg append of the same Arrow data): nothing is
done per record in Python beyond reading it off Kafka. Values are decoded in bulk, column-wise into
Arrow (:mod:`rdg_platform.avro.bulk`), Kafka coordinates become Arrow arrays straight from
the batch's lists, and the hour is written with a single overwrite.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, LessThan
from pyiceberg.schema import Schema
from pyiceberg.table import Table

from rdg_platform.avro.bulk import AvroTopicDecoder, BulkDecoder, Decoder, RecordDecoder
from rdg_platform.lakehouse.catalog import ARCHIVE_NAMESPACE
from rdg_platform.lakehouse.kafka_window import WindowBatch, WindowRead, WindowRecord, read_window
from rdg_platform.lakehouse.schema import (
    KAFKA_COLUMN_NAMES,
    archive_schema,
    hour_partition_spec,
    rows_to_arrow,
)
from rdg_platform.topology import archive_table

if TYPE_CHECKING:
    from rdg_platform.avro import AvroSerde

WriterSchemaLookup = Callable[[int], Mapping[str, Any] | None]
SOURCE_TOPIC_PROPERTY = "rdg.source-topic"  # table property naming the topic a table archives
# Snapshot summary properties of an archive write: the topic, the window [start, end) in epoch ms and
# the per-partition offset ranges (JSON, as WindowRead.offset_ranges()) the write covers.
SNAPSHOT_TOPIC = "rdg.topic"
SNAPSHOT_WINDOW_START = "rdg.window-start-ms"
SNAPSHOT_WINDOW_END = "rdg.window-end-ms"
SNAPSHOT_OFFSETS = "rdg.offset-ranges"


class ArchiveRefusedError(RuntimeError):
    """Replacing the hour would lose archived records that Kafka no longer retains."""


@dataclass(frozen=True)
class ArchivedOffsets:
    """What the archive holds for one window: rows, and per partition (first offset, last offset, rows)."""

    rows: int
    partitions: dict[int, tuple[int, int, int]]


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
    previous_rows: int | None = None  # rows the archive held for the window before this run (None: none)

    @property
    def undecodable_total(self) -> int:
        return sum(self.undecodable.values())


def archive_identifier(topic: str, namespace: str = ARCHIVE_NAMESPACE) -> str:
    return f"{namespace}.{archive_table(topic)}"


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
            properties={"write.parquet.compression-codec": "zstd", SOURCE_TOPIC_PROPERTY: topic})
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


def archive_records(catalog: Catalog, topic: str, avro_schema: Mapping[str, Any], decode: Decoder | BulkDecoder,
                    batches: Iterable[WindowBatch | Sequence[WindowRecord]], start_ms: int, end_ms: int, *,
                    decode_errors: tuple[type[BaseException], ...] = (ValueError,),
                    writer_schema: WriterSchemaLookup | None = None, window: WindowRead | None = None,
                    namespace: str = ARCHIVE_NAMESPACE,
                    describe_retention: Callable[[], str] | None = None) -> ArchiveResult:
    """Decode ``batches`` (records of one window) and replace the window in the topic's table.

    ``decode`` is a :class:`BulkDecoder` (the asset's :class:`AvroTopicDecoder`) or a per-record
    ``bytes -> (schema id, dict)`` function whose ``decode_errors`` mark a record as bad.
    ``writer_schema(schema_id)`` returns the registry's Avro schema for an id; a writer schema with
    fields the table lacks evolves the table before the write. ``window`` is the reader's
    :class:`WindowRead`, whose offsets and byte counts are copied into the result, and whose
    watermarks decide whether Kafka still retains the hour: when it does not, the run raises
    :class:`ArchiveRefusedError` before writing (``describe_retention()`` names the topic's retention in
    that message).

    Everything stays columnar: Kafka coordinates become Arrow arrays straight from the batch's
    lists, events come from the decoder as Arrow columns, and the pieces are aligned to the final
    table schema and concatenated once for a single overwrite.
    """
    table, added = ensure_archive_table(catalog, topic, avro_schema, namespace)
    res = ArchiveResult(topic, archive_identifier(topic, namespace), start_ms, end_ms, added_columns=added)
    bulk = decode if isinstance(decode, BulkDecoder) else RecordDecoder(decode, decode_errors)
    bad: Counter[str] = Counter()
    pieces: list[pa.Table] = []
    seen_ids: set[int] = set()
    for raw in batches:
        batch = raw if isinstance(raw, WindowBatch) else WindowBatch.from_records(raw)
        if not len(batch):
            continue
        present = [i for i, v in enumerate(batch.values) if v is not None]
        if len(present) < len(batch):
            bad["tombstone"] += len(batch) - len(present)
        values = [batch.values[i] for i in present] if len(present) < len(batch) else batch.values
        decoded = bulk.decode_values(values)  # type: ignore[arg-type]  # None values filtered above
        bad.update(decoded.bad)
        kafka = _kafka_columns(topic, batch)
        index = np.asarray(present, dtype=np.int64)
        for group in decoded.groups:
            if group.schema_id not in seen_ids:
                seen_ids.add(group.schema_id)
                ws = writer_schema(group.schema_id) if writer_schema is not None else None
                if ws is not None:
                    new = evolve_table(table, ws)
                    if new:
                        res.added_columns += new
                        table = catalog.load_table(res.table)
            events = group.events
            if isinstance(events, list):  # record-by-record decoder: dicts -> Arrow (current schema)
                events = rows_to_arrow(events, table.schema()).drop_columns(list(KAFKA_COLUMN_NAMES))
            rows = pa.array(index[group.rows])
            coords = kafka.take(rows).append_column("schema_id", pa.repeat(pa.scalar(group.schema_id, pa.int32()),
                                                                           len(group.rows)))
            pieces.append(_merge(coords, events))
    res.undecodable = dict(bad)
    data = align_to_schema(pieces, table.schema())
    res.rows = data.num_rows
    if window is not None:
        res.offset_ranges = window.offset_ranges()
        res.bytes_read = window.bytes_read
        res.scanned = window.scanned
    prev = archived_offsets(table, start_ms, end_ms)
    if prev.rows:
        res.previous_rows = prev.rows
        if window is not None:
            lost = expired_offsets(prev, window)
            if lost:
                retention = describe_retention() if describe_retention is not None else "unknown"
                raise ArchiveRefusedError(
                    f"refusing to re-archive {topic} hour {_iso(start_ms)}..{_iso(end_ms)}: Kafka no longer retains "
                    f"the whole hour (topic retention: {retention}); {'; '.join(lost)}. The archive keeps its "
                    f"{prev.rows} rows for the hour (this read found {res.rows}).")
    props = {SNAPSHOT_TOPIC: topic, SNAPSHOT_WINDOW_START: str(start_ms), SNAPSHOT_WINDOW_END: str(end_ms),
             SNAPSHOT_OFFSETS: json.dumps(res.offset_ranges, sort_keys=True)}
    res.snapshot_id, res.bytes_written, res.files_written = replace_window(
        table, data, start_ms, end_ms, replaces=prev.rows > 0, snapshot_properties=props)
    return res


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def archived_offsets(table: Table, start_ms: int, end_ms: int) -> ArchivedOffsets:
    """The (partition, offset) coverage the archive holds for [start, end) (reads two columns only)."""
    data = table.scan(row_filter=ts_range_filter(start_ms, end_ms),
                      selected_fields=("kafka_partition", "kafka_offset")).to_arrow()
    if not data.num_rows:
        return ArchivedOffsets(0, {})
    parts = data.column("kafka_partition").to_numpy(zero_copy_only=False)
    offs = data.column("kafka_offset").to_numpy(zero_copy_only=False)
    out: dict[int, tuple[int, int, int]] = {}
    for p in np.unique(parts).tolist():
        sel = offs[parts == p]
        out[int(p)] = (int(sel.min()), int(sel.max()), len(sel))
    return ArchivedOffsets(data.num_rows, out)


def expired_offsets(prev: ArchivedOffsets, window: WindowRead) -> list[str]:
    """Why ``window`` cannot reproduce ``prev``, per partition: archived offsets Kafka no longer has
    (earliest retained offset past the first archived one, or a partition or offsets that are gone)."""
    lost = []
    for p, (first, last, n) in sorted(prev.partitions.items()):
        rng = window.ranges.get(p)
        if rng is None:
            lost.append(f"partition {p} no longer exists (archived offsets {first}..{last}, {n} rows)")
        elif rng.low_watermark > first:
            lost.append(f"partition {p}: earliest retained offset {rng.low_watermark} > first archived offset "
                        f"{first} (archived offsets {first}..{last}, {n} rows)")
        elif rng.high_watermark <= last:
            lost.append(f"partition {p}: Kafka's offsets end at {rng.high_watermark} but the archive holds offsets "
                        f"up to {last} (topic recreated?)")
    return lost


def recorded_windows(table: Table) -> dict[int, dict[str, Any]]:
    """Window start (ms) -> the offset ranges the newest retained snapshot of an archive write of that
    window recorded in its summary (see :data:`SNAPSHOT_OFFSETS`)."""
    out: dict[int, tuple[int, dict[str, Any]]] = {}
    for snap in table.snapshots():
        props = snap.summary.additional_properties if snap.summary is not None else {}
        if SNAPSHOT_OFFSETS not in props or SNAPSHOT_WINDOW_START not in props:
            continue
        start = int(props[SNAPSHOT_WINDOW_START])
        if start not in out or snap.timestamp_ms >= out[start][0]:
            out[start] = (snap.timestamp_ms, json.loads(props[SNAPSHOT_OFFSETS]))
    return {k: v for k, (_ts, v) in out.items()}


def archive_window(catalog: Catalog, topic: str, avro_schema: Mapping[str, Any], serde: AvroSerde,
                   bootstrap: str, start_ms: int, end_ms: int, *, timeout_s: float = 60.0,
                   max_lateness_ms: int | None = None, consumer_config: dict[str, Any] | None = None,
                   writer_schema: WriterSchemaLookup | None = None,
                   namespace: str = ARCHIVE_NAMESPACE) -> tuple[ArchiveResult, WindowRead]:
    """What the hourly archive asset runs: read the window from Kafka, decode it in bulk with the
    project's serde (:class:`AvroTopicDecoder`), and replace the window in the table.

    ``writer_schema`` defaults to the serde's own registry lookup (for schema evolution)."""
    from rdg_platform.avro import DecodeError

    def lookup(schema_id: int) -> Mapping[str, Any] | None:
        try:
            return serde.schema_for_id(schema_id)
        except DecodeError:
            return None

    def retention() -> str:
        return topic_retention(bootstrap, topic, consumer_config, timeout_s)

    window = WindowRead(topic, start_ms, end_ms)
    batches = read_window(bootstrap, topic, start_ms, end_ms, timeout_s=timeout_s,
                          max_lateness_ms=max_lateness_ms, consumer_config=consumer_config, result=window)
    res = archive_records(catalog, topic, avro_schema, AvroTopicDecoder(serde, topic), batches, start_ms, end_ms,
                          writer_schema=writer_schema or lookup, window=window, namespace=namespace,
                          describe_retention=retention)
    return res, window


def topic_retention(bootstrap: str, topic: str, client_conf: Mapping[str, Any] | None = None,
                    timeout_s: float = 30.0) -> str:
    """The topic's ``retention.ms`` (and ``retention.bytes`` when set) as the broker reports it, for
    error messages; "unknown (...)" when it cannot be described (e.g. the role lacks DescribeConfigs)."""
    from confluent_kafka import KafkaException

    from rdg_platform.topology import describe_topics

    conf = {k: v for k, v in (client_conf or {}).items() if not k.startswith(("group.", "enable.", "auto."))}
    try:
        configs = describe_topics(bootstrap, [topic], timeout_s=timeout_s, admin_conf=conf).get(topic, {}).get("configs")
    except (KafkaException, ValueError) as exc:
        return f"unknown ({exc})"
    if not configs:
        return "unknown (topic not found)"
    ms = int(configs.get("retention.ms", "-1"))
    text = "forever (retention.ms=-1)" if ms < 0 else f"retention.ms={ms} ({ms / 3_600_000:g} h)"
    size = int(configs.get("retention.bytes", "-1"))
    return text if size < 0 else f"{text}, retention.bytes={size}"


def _kafka_columns(topic: str, batch: WindowBatch) -> pa.Table:
    """Kafka coordinates of a batch as Arrow columns (keys as UTF-8 text, invalid bytes replaced)."""
    keys = pa.array(batch.keys, pa.binary())
    try:
        key_col = keys.cast(pa.string())
    except pa.ArrowInvalid:
        key_col = pa.array([None if k is None else k.decode("utf-8", "replace") for k in batch.keys], pa.string())
    ts = pc.multiply(pa.array(batch.timestamps, pa.int64()), 1000).cast(pa.timestamp("us", tz="UTC"))
    return pa.table({
        "kafka_topic": pa.repeat(pa.scalar(topic, pa.string()), len(batch)),
        "kafka_partition": pa.array(batch.partitions, pa.int32()),
        "kafka_offset": pa.array(batch.offsets, pa.int64()),
        "kafka_ts": ts,
        "kafka_key": key_col,
    })


def _merge(coords: pa.Table, events: pa.Table) -> pa.Table:
    for name, col in zip(events.column_names, events.columns, strict=True):
        if name not in KAFKA_COLUMN_NAMES:
            coords = coords.append_column(name, col)
    return coords


def align_to_schema(pieces: Sequence[pa.Table], schema: Schema) -> pa.Table:
    """One Arrow table in ``schema``'s exact Arrow schema: columns cast to the table's types (e.g.
    timestamp-millis -> timestamptz micros, enum -> string), missing ones (fields a writer schema
    lacks) null, extra ones (fields the table has not got) dropped."""
    arrow_schema = schema.as_arrow()
    if not pieces:
        return arrow_schema.empty_table()
    aligned = []
    for piece in pieces:
        names = set(piece.column_names)
        cols = [piece.column(f.name).cast(f.type) if f.name in names else pa.nulls(piece.num_rows, f.type)
                for f in arrow_schema]
        aligned.append(pa.Table.from_arrays(cols, schema=arrow_schema))
    return aligned[0] if len(aligned) == 1 else pa.concat_tables(aligned)


def replace_window(table: Table, data: pa.Table, start_ms: int, end_ms: int, *, replaces: bool | None = None,
                   snapshot_properties: Mapping[str, str] | None = None) -> tuple[int | None, int, int]:
    """Atomically replace the rows of [start, end) with ``data``. Returns (snapshot id, bytes, files).

    ``replaces`` says whether the table holds rows of the window (None: find out); ``snapshot_properties``
    go into the commit's snapshot summary."""
    flt = ts_range_filter(start_ms, end_ms)
    props = dict(snapshot_properties or {})
    with warnings.catch_warnings():
        # The first archive of an hour has nothing to replace: expected, not worth a warning per hour.
        warnings.filterwarnings("ignore", "Delete operation did not match any records", UserWarning)
        # The common case, an hour archived for the first time, has no files to replace: a plain
        # append then skips the delete's planning, whose metadata copies cost about as much as the
        # write itself. Still atomic and safe against a concurrent writer: the append commits only
        # if the table is still at the snapshot this check read.
        if replaces is None:
            replaces = any(True for _ in table.scan(row_filter=flt).plan_files())
        if data.num_rows and not replaces:
            table.append(data, snapshot_properties=props)
        elif data.num_rows:
            table.overwrite(data, overwrite_filter=flt, snapshot_properties=props)
        elif replaces:
            table.delete(delete_filter=flt, snapshot_properties=props)
    # No refresh: a commit updates ``table``'s metadata in place, and a refresh would only cost a
    # catalog round trip (and could report a concurrent writer's snapshot as ours).
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
