"""Processor app: one per source topic. Avro events in, deduplicated graph records out.

Pipeline (:func:`build_pipeline`, pure Quix Streams operators, testable with ``sdf.test``)::

    bytes --decode (registry)--> event --filter (noise / required fields)--> project
          --map (spec, enriched from the catalog table)--> GraphRecord* --> GraphEmitSink

Bad input never crashes the app: undecodable bytes, unknown or foreign schema ids, missing required
fields and unmappable values go to ``<topic>.dlq`` with the original bytes, the reason and the
source coordinates in headers; any *unexpected* exception on one record is caught by
``on_processing_error`` and dead-lettered the same way (reason ``processing_error``).

Delivery story (at-least-once):
:class:`GraphEmitSink` is the last operator. It buffers records in a :class:`DedupBuffer`, and a
wall-clock timer thread emits each key when its window closes, whether or not more events arrive
(quiet streams). Because it is a Quix *sink*, the checkpoint calls its ``flush()`` before committing
source offsets; ``flush()`` emits whatever is still buffered and waits for Kafka to acknowledge every
produced record (graph and DLQ). So a committed source offset always means its records are durably in
Kafka: a crash loses only uncommitted work, which is re-read and re-emitted (duplicates are harmless:
sink writes are idempotent, last-write-wins by event time). The commit interval equals the dedup
window, so the forced flush at commit rarely cuts a window short.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from quixstreams.context import message_context
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import HeadersTuples
from quixstreams.sinks import BaseSink

from rdg_platform.model.mapping import (
    BadEventError,
    GraphRecord,
    Lookup,
    check_event,
    map_event,
    project_event,
)
from rdg_platform.model.spec import GraphSpec
from rdg_platform.streaming.dedup import DedupBuffer
from rdg_platform.streaming.metrics import AppMetrics
from rdg_platform.streaming.runtime import (
    DLQ_HEADER_APP,
    DLQ_HEADER_DETAIL,
    DLQ_HEADER_OFFSET,
    DLQ_HEADER_PARTITION,
    DLQ_HEADER_REASON,
    DLQ_HEADER_TOPIC,
)

log = logging.getLogger(__name__)

# (topic, raw bytes) -> decoded event; raises an exception with a ``reason`` attribute on bad input
# (rdg_platform.serde.DecodeError) - any exception is treated as undecodable.
Decode = Callable[[str, bytes], Mapping[str, Any]]


class ProducerLike(Protocol):
    """The subset of ``confluent_kafka.Producer`` the processor uses (a list in unit tests)."""

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                headers: list[tuple[str, bytes]] | None = None, on_delivery: Any = None) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


class DeadLetters:
    """Sends a bad record to ``<topic>.dlq``: original key and bytes, reason and coordinates in headers."""

    def __init__(self, producer: ProducerLike, app: str, metrics: AppMetrics, errors: list[str] | None = None) -> None:
        self.producer = producer
        self.app = app
        self.metrics = metrics
        self.errors = errors if errors is not None else []

    def send(self, topic: str, reason: str, detail: str, raw: bytes | None, key: Any,
             partition: int | None = None, offset: int | None = None) -> None:
        if partition is None or offset is None:
            ctx = message_context()
            if ctx is not None:
                partition, offset = ctx.partition, ctx.offset
        headers = [(DLQ_HEADER_REASON, reason.encode()), (DLQ_HEADER_DETAIL, detail[:1000].encode("utf-8", "replace")),
                   (DLQ_HEADER_TOPIC, topic.encode()), (DLQ_HEADER_PARTITION, str(partition).encode()),
                   (DLQ_HEADER_OFFSET, str(offset).encode()), (DLQ_HEADER_APP, self.app.encode())]
        k = key.encode() if isinstance(key, str) else key
        _produce(self.producer, f"{topic}.dlq", raw, k, headers, self._on_delivery)
        self.metrics.dlq.labels(self.app, topic, reason).inc()
        log.info("dead-lettered %s[%s]@%s: %s: %s", topic, partition, offset, reason, detail)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(f"DLQ delivery failed: {err}")


def _produce(producer: ProducerLike, topic: str, value: bytes | None, key: bytes | None,
             headers: list[tuple[str, bytes]] | None, on_delivery: Any) -> None:
    """Produce, waiting for room when librdkafka's local queue is full (never drop)."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)


@dataclass(slots=True)
class _Item:
    """An event travelling through the pipeline with its original bytes (for the DLQ)."""

    raw: bytes
    event: Mapping[str, Any]


class ProcessorSteps:
    """The per-event steps of one source topic, as plain callables for Quix operators."""

    def __init__(self, spec: GraphSpec, topic: str, decode: Decode, lookup: Lookup | None,
                 dead_letters: DeadLetters, metrics: AppMetrics) -> None:
        if topic not in spec.mappings:
            raise ValueError(f"no mapping for topic {topic!r} in the spec (mapped: {sorted(spec.mappings)})")
        self.spec = spec
        self.topic = topic
        self.mapping = spec.mappings[topic]
        self.decode = decode
        self.lookup = lookup
        self.dlq = dead_letters
        self.metrics = metrics
        self.app = metrics.app
        self._in = metrics.records_in.labels(self.app, topic)

    def decode_step(self, value: Any, key: Any, timestamp: int, headers: Any) -> _Item | None:
        self._in.inc()
        self.metrics.rate.add()
        if value is None or not isinstance(value, bytes | bytearray):
            self.dlq.send(self.topic, "not_confluent_framing", "null or non-bytes value", None, key)
            return None
        raw = bytes(value)
        try:
            event = self.decode(self.topic, raw)
        except Exception as exc:
            reason = str(getattr(exc, "reason", "") or "avro_decode_error")
            self.dlq.send(self.topic, reason, str(getattr(exc, "detail", exc)), raw, key)
            return None
        return _Item(raw, event)

    def keep_step(self, item: _Item | None, key: Any, timestamp: int, headers: Any) -> bool:
        if item is None:
            return False
        try:
            noise = check_event(self.mapping, item.event)
        except BadEventError as exc:
            self.dlq.send(self.topic, exc.reason, exc.detail, item.raw, key)
            return False
        if noise is not None:
            self.metrics.dropped.labels(self.app, noise).inc()
            return False
        return True

    def project_step(self, item: _Item) -> _Item:
        item.event = project_event(self.mapping, item.event)
        return item

    def map_step(self, item: _Item, key: Any, timestamp: int, headers: Any) -> list[GraphRecord]:
        try:
            records = map_event(self.spec, self.topic, item.event, self.lookup)
        except BadEventError as exc:
            self.dlq.send(self.topic, exc.reason, exc.detail, item.raw, key)
            return []
        for r in records:
            self.metrics.records_mapped.labels(self.app, r.kind, r.type).inc()
        return records


def build_pipeline(sdf: StreamingDataFrame, spec: GraphSpec, topic: str, *, decode: Decode,
                   lookup: Lookup | None, dead_letters: DeadLetters, metrics: AppMetrics,
                   sink: BaseSink | None = None) -> StreamingDataFrame:
    """Wire decode -> filter/project -> enrich+map -> (dedup sink) onto ``sdf`` (bytes values).

    With ``sink=None`` the returned dataframe emits the mapped :class:`GraphRecord` objects, which is
    what unit tests inspect through ``sdf.test(...)``; apps pass a :class:`GraphEmitSink`.
    """
    steps = ProcessorSteps(spec, topic, decode, lookup, dead_letters, metrics)
    sdf = sdf.apply(steps.decode_step, metadata=True)
    sdf = sdf.filter(steps.keep_step, metadata=True)
    sdf = sdf.apply(steps.project_step)
    sdf = sdf.apply(steps.map_step, metadata=True, expand=True)
    if sink is not None:
        sdf.sink(sink)
    return sdf


class GraphEmitSink(BaseSink):
    """Dedup buffer + wall-clock emitter to ``graph.node.<type>`` / ``graph.edge.<type>``.

    - ``add()`` (run loop thread): fold the record into its key's exact LWW state in the buffer.
    - timer thread, every ``tick_s``: emit every key whose window closed (wall clock), so quiet
      topics and quiet keys are still emitted within window + tick.
    - ``flush()`` (checkpoint, before offsets are committed; also on revoke and shutdown): emit the
      rest and block until Kafka acknowledged every record produced so far. If Kafka does not
      acknowledge, ``flush()`` raises and the checkpoint is not committed.
    """

    def __init__(self, producer: ProducerLike, metrics: AppMetrics, window_s: float, *, tick_s: float = 0.1,
                 max_keys: int = 200_000, flush_timeout_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, dead_letter_errors: list[str] | None = None,
                 start_timer: bool = True) -> None:
        super().__init__()
        self.producer = producer
        self.metrics = metrics
        self.app = metrics.app
        self.buffer = DedupBuffer(window_s, max_keys, on_close=self._on_close)
        self.tick_s = tick_s
        self.flush_timeout_s = flush_timeout_s
        self.clock = clock
        self._lock = threading.Lock()
        self._errors: list[str] = dead_letter_errors if dead_letter_errors is not None else []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_timer = start_timer
        self.emitted = 0

    def setup(self) -> None:
        if self._start_timer and self._thread is None:
            self._thread = threading.Thread(target=self._timer, name="rdg-dedup-timer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def add(self, value: Any, key: Any, timestamp: int, headers: HeadersTuples, topic: str, partition: int,
            offset: int) -> None:
        rec: GraphRecord = value
        with self._lock:
            _merged, evicted = self.buffer.add(rec, self.clock())
            self._emit(evicted)

    def _on_close(self, kind: str, type_: str, updates: int, emitted: int) -> None:
        """A key's window closed: ``updates`` inputs became ``emitted`` records (suppressed = the rest)."""
        if updates > emitted:
            self.metrics.dedup_suppressed.labels(self.app, kind, type_).inc(updates - emitted)

    def tick(self) -> int:
        """Emit every record whose window has closed; returns how many (the timer calls this)."""
        with self._lock:
            due = self.buffer.pop_due(self.clock())
            self._emit(due)
        self.producer.poll(0)
        return len(due)

    def _timer(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:  # keep ticking; flush() will surface persistent producer errors
                log.exception("dedup timer tick failed")

    def _emit(self, records: list[GraphRecord]) -> None:
        for r in records:
            _produce(self.producer, r.topic, json.dumps(r.to_dict(), separators=(",", ":")).encode(),
                     r.key.encode(), None, self._on_delivery)
            self.metrics.records_out.labels(self.app, r.kind, r.type).inc()
        self.emitted += len(records)
        self.metrics.buffered.labels(self.app).set(len(self.buffer))

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"delivery to {msg.topic() if msg is not None else '?'} failed: {err}")

    def flush(self) -> None:
        with self._lock:
            self._emit(self.buffer.drain())
        left = self.producer.flush(self.flush_timeout_s)
        if left:
            raise RuntimeError(f"{left} graph/DLQ records not acknowledged by Kafka within "
                               f"{self.flush_timeout_s}s; not committing source offsets")
        if self._errors:
            errs, self._errors[:] = list(self._errors), []
            raise RuntimeError(f"{len(errs)} records failed delivery (first: {errs[0]}); not committing offsets")


def run_processor(app_name: str) -> None:
    """Run one processor app until SIGTERM/SIGINT (what ``python -m rdg_platform.streaming run`` calls)."""
    from confluent_kafka import Producer
    from quixstreams import Application
    from quixstreams.models import Row

    from rdg_platform.config import settings
    from rdg_platform.serde import AvroSerde
    from rdg_platform.streaming.apps import GRAPH_TOPIC_PARTITIONS, StreamingConfig, get_app
    from rdg_platform.streaming.catalog import CatalogTable
    from rdg_platform.streaming.runtime import LagTracker, ensure_topics, producer_config

    cfg = settings()
    scfg = StreamingConfig.from_env()
    spec = scfg.spec()
    app_spec = get_app(app_name, spec, cfg, scfg)
    topic = app_spec.source_topic
    if app_spec.kind != "processor" or topic is None:
        raise ValueError(f"{app_name} is not a processor app")
    metrics = AppMetrics(app_name)
    metrics.serve(app_spec.metrics_port)
    bootstrap = cfg.kafka_bootstrap

    mapping = spec.mappings[topic]
    out_topics = {r.type: r.kind for r in mapping.records}
    ensure_topics(bootstrap, {**{f"graph.{k}.{t}": GRAPH_TOPIC_PARTITIONS for t, k in out_topics.items()},
                              f"{topic}.dlq": 1})

    serde = AvroSerde(cfg.registry_url)

    def decode(t: str, data: bytes) -> Mapping[str, Any]:
        return serde.decode_for_topic(t, data)[1]

    side_topics = sorted({e.topic for e in mapping.enrich.values()})
    table = CatalogTable(bootstrap, side_topics, decode,
                         {t: spec.sources[t].key for t in side_topics}).start()
    if side_topics and not table.wait_ready(120):
        log.warning("catalog table not caught up after 120 s; starting anyway (enrichment may lag)")

    producer = Producer(producer_config(bootstrap, **{"client.id": app_name}))
    errors: list[str] = []
    dlq = DeadLetters(producer, app_name, metrics, errors)
    sink = GraphEmitSink(producer, metrics, scfg.window_s, dead_letter_errors=errors)
    lag = LagTracker(bootstrap, [topic], metrics).start()

    def on_processing_error(exc: Exception, row: Row | None, logger: logging.Logger) -> bool:
        # One record failed in an unexpected way: dead-letter it and keep going (never crash on data).
        if row is None:
            return False
        logger.warning("processing error at %s[%s]@%s: %r", row.topic, row.partition, row.offset, exc)
        raw = row.value if isinstance(row.value, bytes) else None
        dlq.send(topic, "processing_error", f"{type(exc).__name__}: {exc}", raw, row.key, row.partition, row.offset)
        return True

    app = Application(
        broker_address=bootstrap,
        consumer_group=app_spec.consumer_group,
        auto_offset_reset=scfg.offset_reset,  # type: ignore[arg-type]
        commit_interval=max(scfg.window_s, 1.0),
        on_processing_error=on_processing_error,
        on_message_processed=lag.on_processed,
        state_dir=str(cfg.state_dir / "apps" / "quix" / app_name),
        use_changelog_topics=False,
        loglevel="WARNING",
        # A crashed replica's partitions move to its replacement after the session timeout: keep it
        # short so a kill -9 costs seconds, not librdkafka's default 45 s.
        consumer_extra_config={"session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000},
        producer_extra_config={"linger.ms": 5},
    )
    sdf = app.dataframe(app.topic(topic, value_deserializer="bytes", key_deserializer="str"))
    build_pipeline(sdf, spec, topic, decode=decode, lookup=table.get, dead_letters=dlq, metrics=metrics, sink=sink)
    log.info("processor %s: %s -> %s (window %.1fs, group %s)", app_name, topic, sorted(out_topics),
             scfg.window_s, app_spec.consumer_group)
    try:
        app.run()
    finally:
        sink.close()
        lag.stop()
        table.stop()
        producer.flush(30)
