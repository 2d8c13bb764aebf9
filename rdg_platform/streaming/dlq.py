"""Dead-letter queues: where a streaming app sends a record it cannot process, and how.

A bad record goes to :func:`rdg_platform.topology.dlq_topic` of the topic it was read from, with its
original key and bytes, and headers naming the reason, a detail, the source coordinates and the app.
Bad input therefore never stops an app and is never lost: the DLQ keeps it for inspection or replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from quixstreams.context import message_context

from rdg_platform.streaming.metrics import AppMetrics
from rdg_platform.topology import dlq_topic

log = logging.getLogger(__name__)

HEADER_REASON = "rdg.dlq.reason"
HEADER_DETAIL = "rdg.dlq.detail"
HEADER_TOPIC = "rdg.source.topic"
HEADER_PARTITION = "rdg.source.partition"
HEADER_OFFSET = "rdg.source.offset"
HEADER_APP = "rdg.app"
DETAIL_MAX_CHARS = 1000

DeliveryCallback = Callable[[Any, Any], None]


class ProducerLike(Protocol):
    """The subset of ``confluent_kafka.Producer`` the apps use (a list in unit tests)."""

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                headers: list[tuple[str, bytes]] | None = None, on_delivery: Any = None) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


def produce(producer: ProducerLike, topic: str, value: bytes | None, key: bytes | None,
            headers: list[tuple[str, bytes]] | None, on_delivery: DeliveryCallback | None) -> None:
    """Produce, waiting for room when librdkafka's local queue is full (never drop)."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)


def headers(reason: str, detail: str, topic: str, partition: int | None, offset: int | None,
            app: str) -> list[tuple[str, bytes]]:
    """The headers of one dead letter."""
    return [(HEADER_REASON, reason.encode()),
            (HEADER_DETAIL, detail[:DETAIL_MAX_CHARS].encode("utf-8", "replace")),
            (HEADER_TOPIC, topic.encode()), (HEADER_PARTITION, str(partition).encode()),
            (HEADER_OFFSET, str(offset).encode()), (HEADER_APP, app.encode())]


class DeadLetters:
    """Sends bad records of one app to their DLQ topics; delivery failures are collected in
    ``errors`` (the processor's flush refuses to commit offsets while any is pending)."""

    def __init__(self, producer: ProducerLike, app: str, metrics: AppMetrics, errors: list[str] | None = None) -> None:
        self.producer = producer
        self.app = app
        self.metrics = metrics
        self.errors = errors if errors is not None else []

    def send(self, topic: str, reason: str, detail: str, raw: bytes | None, key: str | bytes | None,
             partition: int | None = None, offset: int | None = None) -> None:
        """Dead-letter one record read from ``topic`` (coordinates default to the current message's)."""
        if partition is None or offset is None:
            ctx = message_context()
            if ctx is not None:
                partition, offset = ctx.partition, ctx.offset
        k = key.encode() if isinstance(key, str) else key
        produce(self.producer, dlq_topic(topic), raw, k, headers(reason, detail, topic, partition, offset, self.app),
                self._on_delivery)
        self.metrics.dlq.labels(self.app, topic, reason).inc()
        log.info("dead-lettered %s[%s]@%s: %s: %s", topic, partition, offset, reason, detail)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(f"DLQ delivery failed: {err}")
