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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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


def read_window(bootstrap: str, topic: str, start_ms: int, end_ms: int, *, batch_size: int = 5000,
                timeout_s: float = 60.0, max_lateness_ms: int | None = None,
                consumer_config: dict[str, Any] | None = None,
                result: WindowRead | None = None) -> Iterator[list[WindowRecord]]:
    """Yield batches of the records of ``topic`` with ``start_ms <= timestamp < end_ms``.

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
        batch: list[WindowRecord] = []
        deadline = time.monotonic() + timeout_s
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
            for m in msgs:
                p = m.partition()
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(p)
                        continue
                    raise KafkaReadError(f"error reading {topic}[{p}]: {err}")
                if p not in pending:
                    continue
                rng = res.ranges[p]
                off = m.offset()
                if off >= rng.end_offset:
                    pending.discard(p)
                    c.pause([TopicPartition(topic, p)])
                    continue
                res.scanned += 1
                _tstype, ts = m.timestamp()
                if start_ms <= ts < end_ms:
                    val = m.value()
                    res.bytes_read += len(val or b"") + len(m.key() or b"")
                    rng.records += 1
                    rng.min_offset = off if rng.min_offset is None else min(rng.min_offset, off)
                    rng.max_offset = off if rng.max_offset is None else max(rng.max_offset, off)
                    batch.append(WindowRecord(p, off, ts, m.key(), val))
                if off >= rng.end_offset - 1:
                    pending.discard(p)
                    c.pause([TopicPartition(topic, p)])
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    except KafkaException as exc:
        raise KafkaReadError(f"Kafka error reading {topic}: {exc}") from exc
    finally:
        c.close()
