"""Archive table schemas, derived from the topics' Avro schemas.

An archive row is the Kafka coordinates of a record plus its decoded event fields::

    kafka_topic, kafka_partition, kafka_offset, kafka_ts (timestamptz, the partition source),
    kafka_key, schema_id, <every field of the Avro record>

Every column is optional on purpose: Avro evolution only ever *adds* fields with defaults (or drops
them), and an optional Iceberg column can absorb both, so ``union_by_name`` of a newer writer schema
never needs an incompatible change. Avro -> Iceberg types: string/enum -> string, int -> int,
long -> long, timestamp-millis/micros -> timestamptz, float/double, boolean, bytes -> binary,
array<T> -> list<T>, map<string,T> -> map<string,T>, nullable unions -> the non-null branch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import HourTransform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    TimestamptzType,
)

KAFKA_COLUMNS: tuple[tuple[str, IcebergType], ...] = (
    ("kafka_topic", StringType()),
    ("kafka_partition", IntegerType()),
    ("kafka_offset", LongType()),
    ("kafka_ts", TimestamptzType()),
    ("kafka_key", StringType()),
    ("schema_id", IntegerType()),
)
KAFKA_COLUMN_NAMES = tuple(n for n, _ in KAFKA_COLUMNS)
PARTITION_SOURCE = "kafka_ts"


class UnsupportedAvroTypeError(ValueError):
    """An Avro construct the archive cannot represent (nested records, multi-type unions)."""


class _Ids:
    def __init__(self, start: int) -> None:
        self._it = itertools.count(start)

    def next(self) -> int:
        return next(self._it)


def _avro_to_iceberg(t: Any, ids: _Ids, where: str) -> IcebergType:
    if isinstance(t, list):
        branches = [b for b in t if b != "null"]
        if len(branches) != 1:
            raise UnsupportedAvroTypeError(f"{where}: only [null, T] unions are supported, got {t}")
        return _avro_to_iceberg(branches[0], ids, where)
    if isinstance(t, Mapping):
        logical = t.get("logicalType")
        base = t.get("type")
        if logical in ("timestamp-millis", "timestamp-micros"):
            return TimestamptzType()
        if base == "enum":
            return StringType()
        if base == "fixed":
            return BinaryType()
        if base == "array":
            return ListType(ids.next(), _avro_to_iceberg(t["items"], ids, where), element_required=False)
        if base == "map":
            return MapType(ids.next(), StringType(), ids.next(), _avro_to_iceberg(t["values"], ids, where),
                           value_required=False)
        if base == "record":
            raise UnsupportedAvroTypeError(f"{where}: nested records are not archived")
        return _avro_to_iceberg(base, ids, where)
    prim: dict[str, IcebergType] = {
        "string": StringType(), "int": IntegerType(), "long": LongType(), "float": FloatType(),
        "double": DoubleType(), "boolean": BooleanType(), "bytes": BinaryType(),
    }
    if t in prim:
        return prim[t]
    raise UnsupportedAvroTypeError(f"{where}: unsupported Avro type {t!r}")


def archive_schema(avro_schema: Mapping[str, Any]) -> Schema:
    """Iceberg schema of an archive table for one Avro record schema (fresh field ids)."""
    ids = _Ids(1)
    fields: list[NestedField] = []
    top_ids = [ids.next() for _ in range(len(KAFKA_COLUMNS) + len(avro_schema["fields"]))]
    nested = _Ids(len(top_ids) + 1)
    for fid, (name, typ) in zip(top_ids, KAFKA_COLUMNS, strict=False):
        fields.append(NestedField(fid, name, typ, required=False))
    for fid, f in zip(top_ids[len(KAFKA_COLUMNS):], avro_schema["fields"], strict=True):
        if f["name"] in KAFKA_COLUMN_NAMES:
            raise UnsupportedAvroTypeError(f"field {f['name']!r} collides with an archive column")
        fields.append(NestedField(fid, f["name"], _avro_to_iceberg(f["type"], nested, f["name"]),
                                  required=False, doc=f.get("doc")))
    return Schema(*fields)


def hour_partition_spec(schema: Schema) -> PartitionSpec:
    """Partition by hour of the Kafka timestamp: an hour's re-archive replaces whole files."""
    src = schema.find_field(PARTITION_SOURCE)
    return PartitionSpec(PartitionField(src.field_id, 1000, HourTransform(), "kafka_ts_hour"))


def _to_ts(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _normalise(value: Any, typ: IcebergType) -> Any:
    if value is None:
        return None
    if isinstance(typ, TimestamptzType):
        return _to_ts(value)
    if isinstance(typ, StringType) and not isinstance(value, str):
        return str(value)
    return value


def _column(vals: list[Any], typ: IcebergType, arrow_type: pa.DataType) -> pa.Array:
    """One Arrow column, on Arrow's fast paths when the values already fit (the common case)."""
    if isinstance(typ, TimestamptzType):
        sample = next((v for v in vals if v is not None), None)
        if sample is None or (isinstance(sample, int) and not isinstance(sample, bool)):
            try:  # epoch millis (Kafka timestamps, JSON events): vectorised ms -> us
                return pc.multiply(pa.array(vals, pa.int64()), 1000).cast(arrow_type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                pass
    try:
        return pa.array(vals, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array([_normalise(v, typ) for v in vals], type=arrow_type)


def rows_to_arrow(rows: Sequence[Mapping[str, Any]], schema: Schema) -> pa.Table:
    """Build the Arrow table for archive rows (dicts with Kafka columns + event fields).

    Columns are built field by field against the Iceberg schema's own Arrow schema, so the result
    can be appended without casts; fields absent from a row are null. Timestamps may be aware
    datetimes (fastavro) or epoch millis.
    """
    arrow_schema = schema.as_arrow()
    cols = [_column([r.get(f.name) for r in rows], f.field_type, af.type)
            for f, af in zip(schema.fields, arrow_schema, strict=True)]
    return pa.Table.from_arrays(cols, schema=arrow_schema)


def arrow_to_events(table: pa.Table) -> Iterable[tuple[str, dict[str, Any]]]:
    """Archive rows back to (topic, event dict) for the mapping: timestamps stay aware datetimes,
    which :func:`rdg_platform.model.mapping.to_epoch_ms` accepts exactly as it accepts fastavro's."""
    events = [c for c in table.column_names if c not in KAFKA_COLUMN_NAMES]
    topics = table.column("kafka_topic").to_pylist()
    cols = {c: table.column(c).to_pylist() for c in events}
    for i, topic in enumerate(topics):
        yield topic, {c: cols[c][i] for c in events}
