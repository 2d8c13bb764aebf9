"""Plumbing shared by the processor and sink apps: topics, the Quix Application, lag, readiness."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from rdg_platform.streaming.metrics import AppMetrics

log = logging.getLogger(__name__)

DLQ_HEADER_REASON = "rdg.dlq.reason"
DLQ_HEADER_DETAIL = "rdg.dlq.detail"
DLQ_HEADER_TOPIC = "rdg.source.topic"
DLQ_HEADER_PARTITION = "rdg.source.partition"
DLQ_HEADER_OFFSET = "rdg.source.offset"
DLQ_HEADER_APP = "rdg.app"


def ensure_topics(bootstrap: str, topics: dict[str, int], timeout_s: float = 30.0) -> None:
    """Create the topics that do not exist yet (``name -> partitions``); existing ones are left alone.

    The topics module provisions the source topics with their retention; apps only make sure the
    topics they *write* (graph topics, DLQs) exist before producing, so a fresh cluster works.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    new = [NewTopic(t, num_partitions=p, replication_factor=1) for t, p in topics.items() if t not in existing]
    if not new:
        return
    for topic, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
        try:
            fut.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
            log.debug("topic %s created concurrently", topic)


class LagTracker:
    """Consumer lag per partition from the last processed offsets (Quix's ``on_message_processed``).

    A daemon thread reads high watermarks every ``interval_s`` with its own group-less consumer, so
    lag is known even when the app is idle or paused (backpressure), and never blocks the run loop.
    """

    def __init__(self, bootstrap: str, topics: Sequence[str], metrics: AppMetrics, interval_s: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.metrics = metrics
        self.interval_s = interval_s
        self.positions: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_processed(self, topic: str, partition: int, offset: int) -> None:
        self.positions[(topic, partition)] = offset + 1

    def start(self) -> LagTracker:
        self._thread = threading.Thread(target=self._run, name="rdg-lag", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "rdg-lag-reader-unused",
                      "enable.auto.commit": False})
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    md = c.list_topics(timeout=5)
                    for t in self.topics:
                        tmd = md.topics.get(t)
                        if tmd is None:
                            continue
                        for p in tmd.partitions:
                            lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=5, cached=False)
                            pos = self.positions.get((t, p))
                            if pos is None:
                                continue  # not assigned to this replica (or nothing processed yet)
                            self.metrics.lag.labels(self.metrics.app, t, str(p)).set(max(0, hi - pos))
                except Exception as exc:  # Kafka hiccup: keep the last values, try again
                    log.debug("lag read failed: %s", exc)
        finally:
            c.close()


def groups_assigned(bootstrap: str, groups: Iterable[str], timeout_s: float = 10.0) -> dict[str, bool]:
    """Whether each consumer group is Stable with at least one member that has partitions assigned.

    Used by tests and benchmarks to know when an app started with ``auto_offset_reset=latest``
    will see the next produced record.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = list(groups)
    out = dict.fromkeys(names, False)
    futs = admin.describe_consumer_groups(names, request_timeout=timeout_s)
    for g, fut in futs.items():
        try:
            d = fut.result()
        except Exception:
            continue
        state = str(getattr(d, "state", "")).upper()
        members = list(getattr(d, "members", []) or [])
        has_parts = any(m.assignment and m.assignment.topic_partitions for m in members)
        out[g] = "STABLE" in state and has_parts
    return out


def wait_groups_assigned(bootstrap: str, groups: Iterable[str], timeout_s: float = 90.0) -> None:
    """Block until every group is assigned (see :func:`groups_assigned`) or raise TimeoutError."""
    names = list(groups)
    deadline = time.monotonic() + timeout_s
    status: dict[str, bool] = {}
    while time.monotonic() < deadline:
        status = groups_assigned(bootstrap, names)
        if all(status.values()):
            return
        time.sleep(0.5)
    raise TimeoutError(f"consumer groups not assigned after {timeout_s}s: {[g for g, ok in status.items() if not ok]}")


def producer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """Idempotent producer: retries can never reorder or duplicate within a partition."""
    cfg: dict[str, Any] = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                           "linger.ms": 5, "compression.type": "lz4", "queue.buffering.max.messages": 500_000}
    cfg.update(extra)
    return cfg
