"""Read exactly the Kafka records whose timestamps fall in a time window.

Bounds per partition: the start offset is ``offsets_for_times(start)`` (the earliest offset whose
timestamp is >= start, so no record of the window lies before it, even with out-of-order producer
timestamps). The end bound is the high watermark taken when the read starts: Kafka CreateTime
timestamps are not monotonic in the log (a producer may stamp an old time, as replays and our tests
do), so ``offsets_for_times(end)`` can point *before* records that belong to the window. Records in
[start offset, end offset) are then filtered by timestamp. With ``max_lateness_ms`` set, the end bound
becomes ``offsets_for_times(end + max_lateness)`` instead: cheaper for old hours of a busy topic,
exact only when producers' clocks are never later than that.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition


class KafkaReadError(RuntimeError):
    """The window could not be read completely (broker unreachable, timeout before the end bound)."""


@dataclass
class PartitionRange:
    """What was read from one partition: the scanned offsets and the records kept."""

    partition: int
    start_offset: int
    end_offset: int  # exclusive
    records: int = 0
    min_offset: int | None = None
    max_offset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "scan_start": self.start_offset, "scan_end": self.end_offset,
                "records": self.records, "min_offset": self.min_offset, "max_offset": self.max_offset}


@dataclass(frozen=True, slots=True)
class WindowRecord:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


@dataclass
class WindowBatch:
    """Records of a window read, column by column: the archive turns each column into one Arrow
    array (and decodes all values at once) instead of walking per-record objects."""

    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def from_records(cls, records: Sequence[WindowRecord]) -> WindowBatch:
        return cls([r.partition for r in records], [r.offset for r in records],
                   [r.timestamp_ms for r in records], [r.key for r in records], [r.value for r in records])


@dataclass
class WindowRead:
    topic: str
    start_ms: int
    end_ms: int
    ranges: dict[int, PartitionRange] = field(default_factory=dict)
    bytes_read: int = 0
    scanned: int = 0

    @property
    def records(self) -> int:
        return sum(r.records for r in self.ranges.values())

    def offset_ranges(self) -> dict[str, Any]:
        return {str(p): r.to_dict() for p, r in sorted(self.ranges.items())}


def hour_window(start: datetime, end: datetime) -> tuple[int, int]:
    """Epoch-ms bounds [start, end) of a Dagster partition time window."""
    s = start if start.tzinfo else start.replace(tzinfo=UTC)
    e = end if end.tzinfo else end.replace(tzinfo=UTC)
    return int(s.timestamp() * 1000), int(e.timestamp() * 1000)


def _consumer(bootstrap: str, extra: dict[str, Any] | None) -> Consumer:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        # Never committed: the archive's position is its Iceberg partition, not a consumer group.
        "group.id": f"rdg-archive-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 52428800,
        "queued.max.messages.kbytes": 65536,
    }
    conf.update(extra or {})
    return Consumer(conf)


def read_window(bootstrap: str, topic: str, start_ms: int, end_ms: int, *, batch_size: int = 50_000,
                timeout_s: float = 60.0, max_lateness_ms: int | None = None,
                consumer_config: dict[str, Any] | None = None,
                result: WindowRead | None = None) -> Iterator[WindowBatch]:
    """Yield batches (columnar) of the records of ``topic`` with ``start_ms <= timestamp < end_ms``.

    ``result`` (optional) is filled with per-partition offset ranges and byte counts as reading goes.
    Raises :class:`KafkaReadError` when the bounds cannot be reached within ``timeout_s``.
    """
    res = result if result is not None else WindowRead(topic, start_ms, end_ms)
    c = _consumer(bootstrap, consumer_config)
    try:
        md = c.list_topics(topic, timeout=timeout_s)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None:
            raise KafkaReadError(f"topic {topic!r} not available: {None if tmd is None else tmd.error}")
        parts = sorted(tmd.partitions)
        starts = c.offsets_for_times([TopicPartition(topic, p, start_ms) for p in parts], timeout=timeout_s)
        ends: dict[int, int] = {}
        if max_lateness_ms is not None:
            for tp in c.offsets_for_times([TopicPartition(topic, p, end_ms + max_lateness_ms) for p in parts],
                                          timeout=timeout_s):
                if tp.offset >= 0:
                    ends[tp.partition] = tp.offset
        assign: list[TopicPartition] = []
        for tp in starts:
            if tp.error:
                raise KafkaReadError(f"offsets_for_times failed for {topic}[{tp.partition}]: {tp.error}")
            _low, high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout_s)
            start = high if tp.offset < 0 or tp.offset == OFFSET_END else tp.offset
            end = min(ends.get(tp.partition, high), high)
            res.ranges[tp.partition] = PartitionRange(tp.partition, start, max(start, end))
            if end > start:
                assign.append(TopicPartition(topic, tp.partition, start))
        if not assign:
            return
        c.assign(assign)
        pending = {tp.partition for tp in assign}
        last = {p: r.end_offset - 1 for p, r in res.ranges.items()}
        kept: list[tuple[int, int, int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout_s
        eof = KafkaError._PARTITION_EOF
        while pending:
            msgs = c.consume(num_messages=min(batch_size, 10000), timeout=1.0)
            if not msgs:
                if time.monotonic() > deadline:
                    raise KafkaReadError(f"timed out reading {topic} partitions {sorted(pending)} up to "
                                         f"{ {p: res.ranges[p].end_offset for p in pending} }")
                # Compacted topics can have gaps at the end: check the position.
                for tp in c.position([TopicPartition(topic, p) for p in list(pending)]):
                    if tp.offset >= res.ranges[tp.partition].end_offset:
                        pending.discard(tp.partition)
                continue
            deadline = time.monotonic() + timeout_s
            # The hot loop of the whole read: locals only, one tuple per kept record; per-partition
            # counts and byte totals are computed per batch in _take_batch.
            keep = kept.append
            scanned = 0
            for m in msgs:
                p = m.partition()
                err = m.error()
                if err is not None:
                    if err.code() == eof:
                        pending.discard(p)
                        continue
                    raise KafkaReadError(f"error reading {topic}[{p}]: {err}")
                if p not in pending:
                    continue
                off = m.offset()
                if off > last[p]:
                    pending.discard(p)
                    c.pause([TopicPartition(topic, p)])
                    continue
                scanned += 1
                ts = m.timestamp()[1]
                if start_ms <= ts < end_ms:
                    keep((p, off, ts, m.key(), m.value()))
                if off == last[p]:
                    pending.discard(p)
                    c.pause([TopicPartition(topic, p)])
            res.scanned += scanned
            if len(kept) >= batch_size:
                yield _take_batch(kept, res)
                kept = []
        if kept:
            yield _take_batch(kept, res)
    except KafkaException as exc:
        raise KafkaReadError(f"Kafka error reading {topic}: {exc}") from exc
    finally:
        c.close()


def _take_batch(kept: list[tuple[int, int, int, bytes | None, bytes | None]], res: WindowRead) -> WindowBatch:
    """Transpose kept records into a :class:`WindowBatch` and account them in ``res``."""
    batch = WindowBatch([k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept],
                        [k[3] for k in kept], [k[4] for k in kept])
    res.bytes_read += (sum(len(v) for v in batch.values if v is not None)
                       + sum(len(k) for k in batch.keys if k is not None))
    parts, offs = np.asarray(batch.partitions), np.asarray(batch.offsets)
    for p in np.unique(parts).tolist():
        sel = offs[parts == p]
        rng = res.ranges[p]
        rng.records += len(sel)
        lo, hi = int(sel.min()), int(sel.max())
        rng.min_offset = lo if rng.min_offset is None else min(rng.min_offset, lo)
        rng.max_offset = hi if rng.max_offset is None else max(rng.max_offset, hi)
    return batch
