"""Decoding a batch of Kafka values for the archive: in bulk, grouped by writer schema id.

The archive asset decodes Confluent-framed Avro with :class:`AvroTopicDecoder`: framing and schema
ids are read for the whole batch with numpy, the registry checks of
:meth:`rdg_platform.avro.serde.AvroSerde.decode_for_topic` run once per distinct id, and the bodies of
each id are decoded column-wise into Arrow (:mod:`rdg_platform.avro.columnar`). Records the
columnar decoder flags, and every record of a schema it does not cover, go through
``decode_for_topic`` itself, so a bad record is counted under the same reason the streaming path
would give it. Any other per-record decoder (JSON in tests and benchmarks) is wrapped by
:class:`RecordDecoder`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rdg_platform.avro.columnar import concat_bodies, decode_columns
from rdg_platform.avro.errors import DecodeError, UnsupportedSchemaError
from rdg_platform.avro.framing import HEADER, MAGIC
from rdg_platform.avro.serde import AvroSerde

Decoder = Callable[[bytes], tuple[int, dict[str, Any]]]
Rows = npt.NDArray[np.int64]


@dataclass
class DecodedGroup:
    """Records of one writer schema id: their indexes in the batch and their event fields, either
    as Arrow columns (bulk path) or as dicts (record-by-record path)."""

    schema_id: int
    rows: Rows
    events: pa.Table | list[dict[str, Any]]


@dataclass
class DecodedBatch:
    groups: list[DecodedGroup] = field(default_factory=list)
    bad: Counter[str] = field(default_factory=Counter)


@runtime_checkable
class BulkDecoder(Protocol):
    def decode_values(self, values: Sequence[bytes]) -> DecodedBatch:
        """Decode non-null values; every index lands in exactly one group or in ``bad``."""
        ...


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", type(exc).__name__))


def _per_record(decode: Decoder, errors: tuple[type[BaseException], ...], values: Sequence[bytes],
                rows: Rows, out: DecodedBatch) -> None:
    """Decode ``values[rows]`` one by one into ``out`` (grouped by schema id)."""
    groups: dict[int, tuple[list[int], list[dict[str, Any]]]] = {}
    for i in rows.tolist():
        try:
            sid, event = decode(values[i])
        except errors as exc:
            out.bad[_reason(exc)] += 1
            continue
        idx, evs = groups.setdefault(sid, ([], []))
        idx.append(i)
        evs.append(event)
    for sid, (idx, evs) in groups.items():
        out.groups.append(DecodedGroup(sid, np.array(idx, dtype=np.int64), evs))


@dataclass
class RecordDecoder:
    """A per-record ``decode(bytes) -> (schema id, dict)`` as a :class:`BulkDecoder`; exceptions of
    type ``errors`` count the record as bad under the exception's ``reason`` (or class name)."""

    decode: Decoder
    errors: tuple[type[BaseException], ...] = (ValueError,)

    def decode_values(self, values: Sequence[bytes]) -> DecodedBatch:
        out = DecodedBatch()
        _per_record(self.decode, self.errors, values, np.arange(len(values), dtype=np.int64), out)
        return out


@dataclass
class AvroTopicDecoder:
    """Bulk :meth:`AvroSerde.decode_for_topic` for one topic (see the module docstring)."""

    serde: AvroSerde
    topic: str

    def decode_values(self, values: Sequence[bytes]) -> DecodedBatch:
        out = DecodedBatch()
        n = len(values)
        if n == 0:
            return out
        buf, starts, ends = concat_bodies(values)
        framed = (ends - starts) >= HEADER.size
        padded = np.concatenate([buf, np.zeros(HEADER.size, dtype=np.uint8)])
        header = padded[np.minimum(starts, len(buf))[:, None] + np.arange(HEADER.size)]
        framed &= header[:, 0] == MAGIC
        ids = header[:, 1:].astype(np.int64) @ np.array([1 << 24, 1 << 16, 1 << 8, 1], dtype=np.int64)
        fallback: list[Rows] = []
        if not framed.all():
            fallback.append(np.flatnonzero(~framed))  # decode_for_topic reports the framing error
        for sid in np.unique(ids[framed]).tolist():
            rows = np.flatnonzero(framed & (ids == sid))
            try:
                schema = self.serde.writer_schema_for_topic(self.topic, int(sid))
            except DecodeError as exc:
                out.bad[exc.reason] += len(rows)
                continue
            try:
                batch = decode_columns(schema, buf, starts[rows] + HEADER.size, ends[rows])
            except UnsupportedSchemaError:
                fallback.append(rows)
                continue
            ok = batch.ok
            if ok.all():
                events = pa.table(batch.columns)
            else:
                mask = pa.array(ok)
                events = pa.table({k: v.filter(mask) for k, v in batch.columns.items()})
                fallback.append(rows[~ok])
            out.groups.append(DecodedGroup(int(sid), rows[ok], events))
        if fallback:
            _per_record(lambda b: self.serde.decode_for_topic(self.topic, b), (DecodeError,), values,
                        np.sort(np.concatenate(fallback)), out)
        return out
