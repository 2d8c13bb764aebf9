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
import numpy.typing as npt
from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from rdg_platform.gcpause import gc_paused


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
    low_watermark: int = 0  # the earliest offset Kafka still retains (log start offset) when the read began
    high_watermark: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "scan_start": self.start_offset, "scan_end": self.end_offset,
                "records": self.records, "min_offset": self.min_offset, "max_offset": self.max_offset,
                "low_watermark": self.low_watermark, "high_watermark": self.high_watermark}


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

    partitions: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    offsets: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    timestamps: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def from_records(cls, records: Sequence[WindowRecord]) -> WindowBatch:
        return cls(np.array([r.partition for r in records], dtype=np.int64),
                   np.array([r.offset for r in records], dtype=np.int64),
                   np.array([r.timestamp_ms for r in records], dtype=np.int64),
                   [r.key for r in records], [r.value for r in records])


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
        # librdkafka connects to the bootstrap address, then again to the broker it learns from the
        # metadata, after this backoff (default 100 ms): ~50 ms of every short window read.
        "reconnect.backoff.ms": 1,
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
            low, high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout_s)
            start = high if tp.offset < 0 or tp.offset == OFFSET_END else tp.offset
            end = min(ends.get(tp.partition, high), high)
            res.ranges[tp.partition] = PartitionRange(tp.partition, start, max(start, end),
                                                      low_watermark=low, high_watermark=high)
            if end > start:
                assign.append(TopicPartition(topic, tp.partition, start))
        if not assign:
            return
        c.assign(assign)
        yield from _read_assigned(c, topic, start_ms, end_ms, res, {tp.partition for tp in assign},
                                  batch_size, timeout_s)
    except KafkaException as exc:
        raise KafkaReadError(f"Kafka error reading {topic}: {exc}") from exc
    finally:
        c.close()


def _read_assigned(c: Consumer, topic: str, start_ms: int, end_ms: int, res: WindowRead, pending: set[int],
                   batch_size: int, timeout_s: float) -> Iterator[WindowBatch]:
    """The consume loop, column by column: per consumed chunk one list comprehension per message
    attribute and numpy masks for the bounds, instead of branching per message in Python (the read
    was the archive's slowest step). ``num_messages`` never exceeds what is left to scan, because
    ``consume`` otherwise waits its whole timeout for messages that will never come."""
    size = max(res.ranges) + 1
    last = np.full(size, -1, dtype=np.int64)        # last offset to scan, per partition
    nxt = np.zeros(size, dtype=np.int64)            # next offset expected, per partition
    for p, r in res.ranges.items():
        last[p], nxt[p] = r.end_offset - 1, r.start_offset
    parts_b: list[npt.NDArray[np.int64]] = []
    offs_b: list[npt.NDArray[np.int64]] = []
    ts_b: list[npt.NDArray[np.int64]] = []
    keys_b: list[bytes | None] = []
    vals_b: list[bytes | None] = []
    deadline = time.monotonic() + timeout_s
    eof = KafkaError._PARTITION_EOF
    while pending:
        with gc_paused():  # ~10k GC-tracked Message objects per chunk
            left = int(sum(last[p] + 1 - nxt[p] for p in pending))
            msgs = c.consume(num_messages=max(1, min(left, batch_size, 10000)), timeout=1.0)
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
            errs = [m.error() for m in msgs]
            # Not errs.count(None): KafkaError.__eq__ raises on None.
            if any([e is not None for e in errs]):
                good = []
                for m, err in zip(msgs, errs, strict=True):
                    if err is None:
                        good.append(m)
                    elif err.code() == eof:
                        pending.discard(m.partition())
                    else:
                        raise KafkaReadError(f"error reading {topic}[{m.partition()}]: {err}")
                msgs = good
                if not msgs:
                    continue
            parts = np.array([m.partition() for m in msgs], dtype=np.int64)
            offs = np.array([m.offset() for m in msgs], dtype=np.int64)
            ts = np.array([m.timestamp()[1] for m in msgs], dtype=np.int64)
            # Messages past a partition's end bound (prefetched before it was paused) are not scanned.
            in_range = offs <= last[parts]
            np.maximum.at(nxt, parts, offs + 1)
            for p in np.unique(parts).tolist():
                if p in pending and nxt[p] > last[p]:
                    pending.discard(p)
                    c.pause([TopicPartition(topic, p)])
            keep = in_range & (ts >= start_ms) & (ts < end_ms)
            res.scanned += int(np.count_nonzero(in_range))
            if keep.all():
                keys_b += [m.key() for m in msgs]
                vals_b += [m.value() for m in msgs]
            else:
                idx = np.flatnonzero(keep)
                keys_b += [msgs[i].key() for i in idx.tolist()]
                vals_b += [msgs[i].value() for i in idx.tolist()]
                parts, offs, ts = parts[idx], offs[idx], ts[idx]
            parts_b.append(parts)
            offs_b.append(offs)
            ts_b.append(ts)
        if len(vals_b) >= batch_size:
            yield _take_batch(parts_b, offs_b, ts_b, keys_b, vals_b, res)
            parts_b, offs_b, ts_b, keys_b, vals_b = [], [], [], [], []
    if vals_b:
        yield _take_batch(parts_b, offs_b, ts_b, keys_b, vals_b, res)


def _take_batch(parts_b: list[npt.NDArray[np.int64]], offs_b: list[npt.NDArray[np.int64]],
                ts_b: list[npt.NDArray[np.int64]], keys: list[bytes | None], values: list[bytes | None],
                res: WindowRead) -> WindowBatch:
    """Join the chunks' columns into a :class:`WindowBatch` and account them in ``res``."""
    parts, offs = np.concatenate(parts_b), np.concatenate(offs_b)
    batch = WindowBatch(parts, offs, np.concatenate(ts_b), keys, values)
    res.bytes_read += sum(map(len, filter(None, values))) + sum(map(len, filter(None, keys)))
    for p in np.unique(parts).tolist():
        sel = offs[parts == p]
        rng = res.ranges[p]
        rng.records += len(sel)
        lo, hi = int(sel.min()), int(sel.max())
        rng.min_offset = lo if rng.min_offset is None else min(rng.min_offset, lo)
        rng.max_offset = hi if rng.max_offset is None else max(rng.max_offset, hi)
    return batch
