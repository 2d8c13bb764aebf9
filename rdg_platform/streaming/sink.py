"""Sink apps: graph topics -> Cassandra through the KV layer, at-least-once.

:class:`CassandraSink` follows the shape of Quix Streams' own batching sinks
(``quixstreams.sinks.community.*``): ``setup()`` validates the connection (the tables are provisioned
beforehand, see :mod:`rdg_platform.kv.schema`); ``write(batch)`` sends the batch in chunks of prepared, idempotent upserts
(``GraphStore.write``: concurrent, ``USING TIMESTAMP`` = event time) with bounded retries, then raises
``SinkBackpressureError``. Quix calls ``write`` from the checkpoint *before* committing offsets, so
offsets are committed only after Cassandra acknowledged every record of the checkpoint. On
backpressure Quix drops the batch, pauses the partitions, seeks back to the last committed offsets
and resumes after ``retry_after``: a Cassandra outage becomes a pause, never a loss. Replays after a
pause or a crash rewrite the same cells with the same timestamps, so they converge (LWW).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from quixstreams.context import message_context
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch

from rdg_platform.kv import GraphStore
from rdg_platform.model.mapping import BadEventError, GraphRecord
from rdg_platform.streaming.metrics import AppMetrics

if TYPE_CHECKING:
    from rdg_platform.settings import Settings

# (source topic, reason, detail, raw bytes, key) -> the record is dead-lettered
DeadLetter = Callable[[str, str, str, bytes | None, Any], None]

log = logging.getLogger(__name__)


class GraphWriter(Protocol):
    """What the sink needs of the graph store (:class:`GraphStore` is the implementation)."""

    def ping(self) -> object:
        """Fail fast when the store cannot be reached."""

    def write(self, records: Sequence[GraphRecord]) -> Sequence[GraphRecord] | None:
        """Write records idempotently (LWW by event time); return those written (None: all of them)."""


class CassandraSink(BatchingSink):
    """Writes :class:`GraphRecord` values to the graph namespaces (``GraphStore``)."""

    def __init__(self, store: GraphWriter, metrics: AppMetrics, *, chunk_size: int = 500, max_retries: int = 3,
                 retry_backoff_s: float = 0.5, backpressure_retry_s: float = 5.0,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        self.store = store
        self.metrics = metrics
        self.app = metrics.app
        self.chunk_size = chunk_size
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.backpressure_retry_s = backpressure_retry_s
        self._clock = clock
        self._sleep = sleep

    def setup(self) -> None:
        """Prove Cassandra answers before consuming (fail fast at start). The tables are provisioned
        beforehand (:mod:`rdg_platform.kv.schema`), never created by a writer."""
        self.store.ping()

    def write(self, batch: SinkBatch) -> None:
        for chunk in batch.iter_chunks(self.chunk_size):
            records: list[GraphRecord] = [item.value for item in chunk]
            self._write_chunk(records)

    def _write_chunk(self, records: Sequence[GraphRecord]) -> None:
        attempt = 0
        while True:
            try:
                written = self.store.write(records)
                break
            except Exception as exc:
                self.metrics.cassandra_errors.labels(self.app).inc()
                attempt += 1
                if attempt > self.max_retries:
                    self.metrics.backpressure.labels(self.app).inc()
                    log.warning("Cassandra write failed %d times (%s: %s); backpressure for %.1fs",
                                attempt, type(exc).__name__, exc, self.backpressure_retry_s)
                    raise SinkBackpressureError(retry_after=self.backpressure_retry_s) from exc
                self._sleep(self.retry_backoff_s * (2 ** (attempt - 1)))
        now_ms = self._clock() * 1000
        for r in records if written is None else written:  # not those the erasure fence dropped
            self.metrics.cassandra_writes.labels(self.app, r.kind, r.type).inc()
            self.metrics.freshness.labels(self.app).observe(max(0.0, (now_ms - r.updated_at) / 1000))


class SinkSteps:
    """Parse graph-topic JSON into :class:`GraphRecord`; a malformed record is dead-lettered."""

    def __init__(self, metrics: AppMetrics, dead_letter: DeadLetter, known_types: set[tuple[str, str]]) -> None:
        self.metrics = metrics
        self.dead_letter = dead_letter
        self.known = known_types
        self.app = metrics.app

    def parse(self, value: Any, key: Any, timestamp: int, headers: Any) -> GraphRecord | None:
        ctx = message_context()
        topic = ctx.topic if ctx is not None else "?"
        self.metrics.records_in.labels(self.app, topic).inc()
        self.metrics.rate.add()
        try:
            if not isinstance(value, bytes | bytearray):
                raise BadEventError("bad_record", "null value")
            try:
                d = json.loads(value)
            except ValueError as exc:
                raise BadEventError("bad_json", str(exc)) from None
            if not isinstance(d, dict):
                raise BadEventError("bad_record", "value is not a JSON object")
            rec = GraphRecord.from_dict(d)
            if (rec.kind, rec.type) not in self.known or rec.topic != topic:
                raise BadEventError("unknown_type", f"{rec.kind} {rec.type!r} does not belong on {topic}")
            if rec.kind == "edge" and not rec.dst:
                raise BadEventError("bad_record", "edge without dst")
            return rec
        except BadEventError as exc:
            self.dead_letter(topic, exc.reason, exc.detail, bytes(value) if isinstance(value, bytes | bytearray)
                             else None, key)
            return None


def build_sink_pipeline(sdf: StreamingDataFrame, steps: SinkSteps, sink: BatchingSink | None) -> StreamingDataFrame:
    """bytes -> GraphRecord (bad ones to the DLQ) -> sink."""
    sdf = sdf.apply(steps.parse, metadata=True)
    sdf = sdf.filter(lambda r: r is not None)
    if sink is not None:
        sdf.sink(sink)
    return sdf


def run_sink(settings: Settings, app_name: str) -> None:
    """Run one sink app (one group of namespaces) until SIGTERM/SIGINT."""
    from confluent_kafka import Producer

    from rdg_platform.streaming.apps import app_specs, get_app
    from rdg_platform.streaming.dlq import DeadLetters
    from rdg_platform.streaming.runtime import LagTracker, make_application, producer_config, provision_topics

    spec = settings.load_spec()
    app_spec = get_app(app_specs(spec, settings.streaming, settings.topics_file), app_name)
    if app_spec.kind != "sink":
        raise ValueError(f"{app_name} is not a sink app")
    metrics = AppMetrics(app_name)
    if app_spec.metrics_port is not None:
        metrics.serve(app_spec.metrics_port, settings.streaming.metrics_bind_host)
    topics = list(app_spec.input_topics)
    provision_topics(settings, spec)

    producer = Producer(producer_config(settings.kafka, **{"client.id": app_name}))
    dlq = DeadLetters(producer, app_name, metrics)

    def dead_letter(topic: str, reason: str, detail: str, raw: bytes | None, key: Any) -> None:
        dlq.send(topic, reason, detail, raw, key)
        producer.flush(10)  # rare; keep the DLQ write ahead of the offset commit

    known: set[tuple[str, str]] = {(ns.kind, ns.type) for n, ns in spec.namespaces.items()
                                   if n in app_spec.namespaces}
    steps = SinkSteps(metrics, dead_letter, known)
    # A writer: every record passes the erasure fence first (records of erased members are dropped).
    store = GraphStore.from_spec(spec, settings.cassandra, erasure=settings.erasure,
                                 on_fenced=lambda r: metrics.erasure_fenced.labels(app_name, r.kind, r.type).inc())
    s = settings.streaming
    sink = CassandraSink(store, metrics, chunk_size=s.sink_chunk, max_retries=s.sink_retries,
                         backpressure_retry_s=s.sink_backpressure_s)
    lag = LagTracker(settings.kafka, topics, metrics).start()
    app = make_application(settings, app_spec, on_message_processed=lag.on_processed)
    for t in topics:
        sdf = app.dataframe(app.topic(t, value_deserializer="bytes", key_deserializer="str"))
        build_sink_pipeline(sdf, steps, sink)
    log.info("sink %s: %s -> Cassandra (group %s)", app_name, topics, app_spec.consumer_group)
    try:
        app.run()
    finally:
        lag.stop()
        producer.flush(10)
        store.close()
