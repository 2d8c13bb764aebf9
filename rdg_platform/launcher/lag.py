"""Consumer-group lag with bounded timeouts, for callers that must not block (sensors).

Lag of a group on a partition = high watermark - committed offset (a partition the group never
committed counts from the low watermark: everything retained is unread). Every broker call carries
a timeout and the whole read a deadline; a broker that is down yields a report with ``error`` set
instead of an exception or a hang.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from rdg_platform.kafka_client import client_config
from rdg_platform.settings import KafkaSettings


@dataclass
class LagReport:
    group: str
    total: int | None = None
    partitions: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    elapsed_s: float = 0.0

    def to_metadata(self) -> dict[str, Any]:
        return {"consumer_group": self.group, "lag": -1 if self.total is None else self.total,
                "lag_by_partition": dict(self.partitions), "lag_error": self.error or "",
                "lag_read_s": round(self.elapsed_s, 3)}


def consumer_lag(kafka: KafkaSettings, group: str, topics: Sequence[str], timeout_s: float = 3.0) -> LagReport:
    """Total and per-partition lag of ``group`` on ``topics``, within about ``timeout_s`` seconds."""
    started = time.monotonic()
    deadline = started + timeout_s
    rep = LagReport(group)

    def left() -> float:
        return max(0.2, deadline - time.monotonic())

    c = Consumer(client_config(kafka, **{
        "group.id": group, "enable.auto.commit": False, "socket.timeout.ms": int(timeout_s * 1000),
        "session.timeout.ms": 6000, "socket.connection.setup.timeout.ms": int(timeout_s * 1000)}))
    try:
        tps: list[TopicPartition] = []
        for topic in topics:
            md = c.list_topics(topic, timeout=left())
            tmd = md.topics.get(topic)
            if tmd is None or tmd.error is not None:
                raise KafkaException(f"topic {topic} unavailable: {None if tmd is None else tmd.error}")
            tps.extend(TopicPartition(topic, p) for p in sorted(tmd.partitions))
        committed = c.committed(tps, timeout=left()) if tps else []
        total = 0
        for tp in committed:
            if time.monotonic() > deadline:
                raise TimeoutError(f"lag read exceeded {timeout_s}s")
            low, high = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=left())
            pos = tp.offset if tp.offset >= 0 else low
            lag = max(0, high - pos)
            rep.partitions[f"{tp.topic}[{tp.partition}]"] = lag
            total += lag
        rep.total = total
    except (KafkaException, TimeoutError, RuntimeError) as exc:
        rep.error = f"{type(exc).__name__}: {exc}"
    finally:
        rep.elapsed_s = time.monotonic() - started
        try:
            c.close()
        except RuntimeError:
            pass
    return rep
