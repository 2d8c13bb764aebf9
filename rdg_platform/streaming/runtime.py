"""Plumbing shared by the processor and sink apps: the Quix Application, topics, lag, readiness."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from rdg_platform.kafka_client import client_config
from rdg_platform.model.spec import GraphSpec
from rdg_platform.settings import KafkaSettings, Settings
from rdg_platform.streaming.apps import AppSpec
from rdg_platform.streaming.metrics import AppMetrics
from rdg_platform.topology import EnsureResult, ensure_topics

if TYPE_CHECKING:
    from quixstreams import Application
    from quixstreams.kafka.configuration import ConnectionConfig
    from quixstreams.models import Row

log = logging.getLogger(__name__)

ProcessingErrorCallback = Callable[[Exception, "Row | None", logging.Logger], bool]


def connection_config(kafka: KafkaSettings) -> ConnectionConfig:
    """The Kafka connection of :func:`rdg_platform.kafka_client.client_config` (bootstrap servers and
    security) as Quix Streams' typed config, which validates it and keeps the password a ``SecretStr``."""
    from quixstreams.kafka.configuration import ConnectionConfig

    return ConnectionConfig.from_librdkafka_dict(client_config(kafka))


def make_application(settings: Settings, app: AppSpec, *, on_message_processed: Callable[[str, int, int], None],
                     on_processing_error: ProcessingErrorCallback | None = None,
                     producer_extra_config: Mapping[str, Any] | None = None) -> Application:
    """The Quix Streams ``Application`` of one app, connected and tuned from ``settings``.

    Checkpoint interval by kind: a processor commits every ``processor_commit_interval_s`` (each
    checkpoint flushes the dedup window, so it is spaced several windows apart); a sink every
    ``sink_commit_s`` (each checkpoint is a Cassandra write), and polls at most 0.1 s so an idle
    sink's last batch is not held back by Quix's default 1 s poll.
    """
    from quixstreams import Application

    s = settings.streaming
    sink = app.kind == "sink"
    return Application(
        broker_address=connection_config(settings.kafka),
        consumer_group=app.consumer_group,
        auto_offset_reset=s.offset_reset,
        commit_interval=s.sink_commit_s if sink else s.processor_commit_interval_s,
        consumer_poll_timeout=0.1 if sink else 1.0,
        on_processing_error=on_processing_error,
        on_message_processed=on_message_processed,
        state_dir=settings.state_dir / "apps" / "quix" / app.name,
        use_changelog_topics=False,
        loglevel="WARNING",
        # A crashed replica's partitions move to its replacement after the session timeout: keep it
        # short so a kill -9 costs seconds, not librdkafka's default 45 s.
        consumer_extra_config={"session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000},
        producer_extra_config=dict(producer_extra_config or {}),
    )


def provision_topics(settings: Settings, spec: GraphSpec) -> EnsureResult:
    """Make the broker hold every topic of the model as the topology sizes it (idempotent).

    Apps call it at start so a fresh cluster works: they must not let a client auto-create the
    topics they read or write with a broker default size.
    """
    return ensure_topics(AdminClient(client_config(settings.kafka)), spec, overrides=settings.topics_file)


class LagTracker:
    """Consumer lag per partition from the last processed offsets (Quix's ``on_message_processed``).

    A daemon thread reads high watermarks every ``interval_s`` with its own group-less consumer, so
    lag is known even when the app is idle or paused (backpressure), and never blocks the run loop.
    """

    def __init__(self, kafka: KafkaSettings, topics: Sequence[str], metrics: AppMetrics, interval_s: float = 5.0) -> None:
        self.kafka = kafka
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
        c = Consumer(client_config(self.kafka, **{"group.id": "rdg-lag-reader-unused", "enable.auto.commit": False}))
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


def groups_assigned(kafka: KafkaSettings, groups: Iterable[str], timeout_s: float = 10.0) -> dict[str, bool]:
    """Whether each consumer group is Stable with at least one member that has partitions assigned.

    Used by tests and benchmarks to know when an app started with ``auto_offset_reset=latest``
    will see the next produced record.
    """
    admin = AdminClient(client_config(kafka))
    names = list(groups)
    out = dict.fromkeys(names, False)
    futs = admin.describe_consumer_groups(names, request_timeout=timeout_s)
    for g, fut in futs.items():
        try:
            d = fut.result()
        except KafkaException:
            continue
        has_parts = any(m.assignment and m.assignment.topic_partitions for m in d.members or [])
        out[g] = d.state == ConsumerGroupState.STABLE and has_parts
    return out


def wait_groups_assigned(kafka: KafkaSettings, groups: Iterable[str], timeout_s: float = 90.0) -> None:
    """Block until every group is assigned (see :func:`groups_assigned`) or raise TimeoutError."""
    names = list(groups)
    deadline = time.monotonic() + timeout_s
    status: dict[str, bool] = {}
    while time.monotonic() < deadline:
        status = groups_assigned(kafka, names)
        if all(status.values()):
            return
        time.sleep(0.5)
    raise TimeoutError(f"consumer groups not assigned after {timeout_s}s: {[g for g, ok in status.items() if not ok]}")


def producer_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """Idempotent producer: retries can never reorder or duplicate within a partition."""
    return client_config(kafka, **{"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                                   "compression.type": "lz4", "queue.buffering.max.messages": 500_000, **extra})
