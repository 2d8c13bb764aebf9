"""Processor app: one per source topic. Avro events in, deduplicated graph records out.

Pipeline (:func:`build_pipeline`, pure Quix Streams operators, testable with ``sdf.test``)::

    bytes --decode (registry)--> event --filter (noise / required fields)
          --map (compiled spec, enriched from the catalog table)--> mapped rows --> GraphEmitSink

The per-event steps are fused into one operator (:class:`ProcessorSteps`) and the sink receives one
list of rows per event: Quix Streams runs its loop once per message, so framework calls per event
are the processor's main fixed cost.

Event time is bounded (:class:`rdg_platform.model.mapping.TimeGuard`, against the wall clock at
processing): an event dated beyond now + ``RDG_STREAMING_MAX_CLOCK_SKEW_S`` is dead-lettered with reason
``event_time_in_future``, and records older than their namespace's TTL are dropped and counted
(``rdg_records_expired_total``): they would be born expired.

Bad input never crashes the app: undecodable bytes, unknown or foreign schema ids, missing required
fields, future event times and unmappable values go to the topic's DLQ (:mod:`rdg_platform.streaming.dlq`) with the original bytes, the reason and the
source coordinates in headers; any *unexpected* exception on one record is caught by
``on_processing_error`` and dead-lettered the same way (reason ``processing_error``).

Delivery story (at-least-once):
:class:`GraphEmitSink` is the last operator. It folds records into a :class:`DedupBuffer`
(leading-edge plus trailing: a key's first update and significant changes are produced at once, the
rest once per window, a busy key's window growing up to ``RDG_STREAMING_DEDUP_MAX_WINDOW_S``), and a
wall-clock timer thread emits each key's trailing changes when its window closes, whether or not
more events arrive (quiet streams). Because it is a Quix *sink*, the
checkpoint calls its ``flush()`` before committing source offsets; ``flush()`` emits every pending
change and waits for Kafka to acknowledge every produced record (graph and DLQ). So a committed
source offset always means its records are durably in Kafka: a crash loses only uncommitted work,
which is re-read and re-emitted (duplicates are harmless: sink writes are idempotent, last-write-wins
by event time). A flush keeps the keys (what was emitted stays the baseline) and counts as their
windows closing (they re-arm from it), so checkpoints (``RDG_STREAMING_PROCESSOR_COMMIT_S``, default
the largest dedup window) replace trailing emissions rather than add to them; a crash re-reads at
most one checkpoint interval of input.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson as _orjson
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import HeadersTuples
from quixstreams.sinks import BaseSink

from rdg_platform.model.mapping import (
    DEFAULT_GUARD,
    BadEventError,
    GraphRecord,
    Lookup,
    MappedRow,
    TimeGuard,
    compile_mapping,
)
from rdg_platform.model.spec import GraphSpec
from rdg_platform.streaming.dedup import DedupBuffer, Significant
from rdg_platform.streaming.dlq import DeadLetters, ProducerLike, produce
from rdg_platform.streaming.metrics import AppMetrics

if TYPE_CHECKING:
    from rdg_platform.settings import Settings

log = logging.getLogger(__name__)

# (topic, raw bytes) -> decoded event; raises an exception with a ``reason`` attribute on bad input
# (rdg_platform.avro.DecodeError) - any exception is treated as undecodable.
Decode = Callable[[str, bytes], Mapping[str, Any]]


def wall_clock_ms() -> int:
    """The reference time of the stream's :class:`TimeGuard`: the wall clock at processing."""
    return time.time_ns() // 1_000_000


class ProcessorSteps:
    """The per-event work of one source topic, fused into one callable for one Quix operator.

    decode -> filter (noise dropped, missing required fields dead-lettered) -> enrich + map. Why one
    operator instead of apply/filter/apply/apply(expand): every Quix operator and every expanded
    record costs a framework call per event, and the processor's throughput is bounded by that
    per-message overhead; one step that returns the event's mapped rows is the same pipeline with
    the least of it. Projection is gone because the compiled mapping reads only the fields it needs.

    ``guard`` bounds event time against ``clock_ms()`` (the wall clock at processing).
    """

    def __init__(self, spec: GraphSpec, topic: str, decode: Decode, lookup: Lookup | None,
                 dead_letters: DeadLetters, metrics: AppMetrics, *, guard: TimeGuard = DEFAULT_GUARD,
                 clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        if topic not in spec.mappings:
            raise ValueError(f"no mapping for topic {topic!r} in the spec (mapped: {sorted(spec.mappings)})")
        self.spec = spec
        self.topic = topic
        self.mapper = compile_mapping(spec, topic)
        self.decode = decode
        self.lookup = lookup
        self.dlq = dead_letters
        self.metrics = metrics
        self.guard = guard
        self.clock_ms = clock_ms
        self.app = metrics.app
        self._in = metrics.records_in.labels(self.app, topic)
        self._rate = metrics.rate
        self._mapped = {(rule.kind, rule.type): metrics.records_mapped.labels(self.app, rule.kind, rule.type)
                        for rule in self.mapper.mapping.records}

    def rows_step(self, value: Any, key: Any, timestamp: int, headers: Any) -> list[MappedRow]:
        """One source message -> its mapped rows ([] when dropped or dead-lettered)."""
        self._in.inc()
        self._rate.add()
        if type(value) is not bytes:
            if not isinstance(value, bytearray):
                self.dlq.send(self.topic, "not_confluent_framing", "null or non-bytes value", None, key)
                return []
            value = bytes(value)
        try:
            event = self.decode(self.topic, value)
        except Exception as exc:
            reason = str(getattr(exc, "reason", "") or "avro_decode_error")
            self.dlq.send(self.topic, reason, str(getattr(exc, "detail", exc)), value, key)
            return []
        try:
            noise = self.mapper.check(event)
            if noise is not None:
                self.metrics.dropped.labels(self.app, noise).inc()
                return []
            rows, expired = self.mapper.guarded_rows(event, self.lookup, self.clock_ms(), self.guard, checked=True)
        except BadEventError as exc:
            self.dlq.send(self.topic, exc.reason, exc.detail, value, key)
            return []
        if expired:
            for row in expired:
                self.metrics.expired.labels(self.app, row[1], row[2]).inc()
        mapped = self._mapped
        for row in rows:
            mapped[row[1], row[2]].inc()
        return rows

    def records_step(self, value: Any, key: Any, timestamp: int, headers: Any) -> list[GraphRecord]:
        """:meth:`rows_step` as GraphRecord objects (what ``build_pipeline(sink=None)`` emits)."""
        return [GraphRecord(k, t, i, d, p, ts) for _key, k, t, i, d, p, ts in self.rows_step(value, key, timestamp, headers)]


def build_pipeline(sdf: StreamingDataFrame, spec: GraphSpec, topic: str, *, decode: Decode,
                   lookup: Lookup | None, dead_letters: DeadLetters, metrics: AppMetrics,
                   sink: BaseSink | None = None, guard: TimeGuard = DEFAULT_GUARD,
                   clock_ms: Callable[[], int] = wall_clock_ms) -> StreamingDataFrame:
    """Wire decode -> filter -> enrich+map -> (dedup sink) onto ``sdf`` (bytes values).

    With ``sink=None`` the returned dataframe emits the mapped :class:`GraphRecord` objects one by
    one, which is what unit tests inspect through ``sdf.test(...)``. Apps pass a
    :class:`GraphEmitSink`, which receives each event's mapped rows as one list (the same
    records, without building an object per record that the dedup window mostly folds away).
    """
    steps = ProcessorSteps(spec, topic, decode, lookup, dead_letters, metrics, guard=guard, clock_ms=clock_ms)
    if sink is None:
        return sdf.apply(steps.records_step, metadata=True, expand=True)
    sdf = sdf.apply(steps.rows_step, metadata=True)
    sdf.sink(sink)
    return sdf


class GraphEmitSink(BaseSink):
    """Dedup buffer + wall-clock emitter to ``graph.node.<type>`` / ``graph.edge.<type>``.

    - ``add()`` (run loop thread): fold the record into its key's exact LWW state in the buffer;
      produce at once what the buffer emits (a key's leading edge, a significant change).
    - timer thread, every ``tick_s``: emit the trailing changes of every key whose window closed
      (wall clock), so quiet topics and quiet keys are still emitted within window + tick.
    - ``flush()`` (checkpoint, before offsets are committed; also on revoke and shutdown): emit every
      pending change and block until Kafka acknowledged every record produced so far. If Kafka does
      not acknowledge, ``flush()`` raises and the checkpoint is not committed.
    """

    def __init__(self, producer: ProducerLike, metrics: AppMetrics, window_s: float, *, tick_s: float = 0.1,
                 max_keys: int = 200_000, flush_timeout_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, dead_letter_errors: list[str] | None = None,
                 start_timer: bool = True, significant: Significant | None = None,
                 max_window_s: float | None = None) -> None:
        super().__init__()
        self.producer = producer
        self.metrics = metrics
        self.app = metrics.app
        self.buffer = DedupBuffer(window_s, max_keys, on_close=self._on_close, significant=significant,
                                  max_window_s=max_window_s)
        self.tick_s = tick_s
        self.flush_timeout_s = flush_timeout_s
        self.clock = clock
        self._lock = threading.Lock()
        self._errors: list[str] = dead_letter_errors if dead_letter_errors is not None else []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_timer = start_timer
        self._out: dict[tuple[str, str], Any] = {}
        self._buffered = metrics.buffered.labels(self.app)
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
        """Fold one event's mapped rows (a list, from :meth:`ProcessorSteps.rows_step`) or one
        :class:`GraphRecord` into the buffer."""
        if not value:
            return
        now = self.clock()
        with self._lock:
            if isinstance(value, GraphRecord):
                out = self.buffer.add(value, now)
            else:
                out = self.buffer.add_rows(value, now)
            if out:
                self._emit(out)

    def _on_close(self, kind: str, type_: str, updates: int, emitted: int) -> None:
        """A key's accounting period ended (its window closed, or a flush): ``updates`` inputs
        became ``emitted`` records (suppressed = the rest)."""
        if updates > emitted:
            self.metrics.dedup_suppressed.labels(self.app, kind, type_).inc(updates - emitted)

    def tick(self) -> int:
        """Emit every record whose window has closed; returns how many (the timer calls this)."""
        with self._lock:
            due = self.buffer.pop_due(self.clock())
            self._emit(due)
            self._buffered.set(len(self.buffer))
        self.producer.poll(0)
        return len(due)

    def _timer(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:  # keep ticking; flush() will surface persistent producer errors
                log.exception("dedup timer tick failed")

    def _emit(self, records: list[GraphRecord]) -> None:
        """Produce ``records`` (the caller holds the lock) as compact JSON (orjson)."""
        producer = self.producer
        out = self._out
        on_delivery = self._on_delivery
        for r in records:
            produce(producer, r.topic, _orjson.dumps(r.to_dict()), r.id.encode(), None, on_delivery)
            child = out.get((r.kind, r.type))
            if child is None:
                child = out[(r.kind, r.type)] = self.metrics.records_out.labels(self.app, r.kind, r.type)
            child.inc()
        self.emitted += len(records)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"delivery to {msg.topic() if msg is not None else '?'} failed: {err}")

    def flush(self) -> None:
        with self._lock:
            self._emit(self.buffer.drain(self.clock()))
            self._buffered.set(len(self.buffer))
        left = self.producer.flush(self.flush_timeout_s)
        if left:
            raise RuntimeError(f"{left} graph/DLQ records not acknowledged by Kafka within "
                               f"{self.flush_timeout_s}s; not committing source offsets")
        if self._errors:
            errs, self._errors[:] = list(self._errors), []
            raise RuntimeError(f"{len(errs)} records failed delivery (first: {errs[0]}); not committing offsets")


def run_processor(settings: Settings, app_name: str) -> None:
    """Run one processor app until SIGTERM/SIGINT (what ``python -m rdg_platform.streaming run`` calls)."""
    from confluent_kafka import Producer
    from quixstreams.models import Row

    from rdg_platform.avro import AvroSerde, SchemaRegistry, topic_decoder
    from rdg_platform.streaming.apps import app_specs, get_app
    from rdg_platform.streaming.catalog import CatalogTable
    from rdg_platform.streaming.runtime import LagTracker, make_application, producer_config, provision_topics
    from rdg_platform.topology import graph_topic

    spec = settings.load_spec()
    app_spec = get_app(app_specs(spec, settings.streaming, settings.topics_file), app_name)
    topic = app_spec.source_topic
    if app_spec.kind != "processor" or topic is None:
        raise ValueError(f"{app_name} is not a processor app")
    metrics = AppMetrics(app_name)
    if app_spec.metrics_port is not None:
        metrics.serve(app_spec.metrics_port, settings.streaming.metrics_bind_host)
    provision_topics(settings, spec)

    mapping = spec.mappings[topic]
    # Timestamps as epoch-ms ints: the mapping wants epoch ms anyway, and building an aware datetime
    # per timestamp field (then converting it back) was a measurable share of decoding.
    serde = AvroSerde(SchemaRegistry.from_settings(settings.registry), timestamps="millis")

    side_topics = sorted({e.topic for e in mapping.enrich.values()})
    decoders = {t: topic_decoder(serde, t) for t in (topic, *side_topics)}

    def decode(t: str, data: bytes) -> Mapping[str, Any]:
        return decoders[t](data)

    table = CatalogTable(settings.kafka, side_topics, decode, {t: spec.sources[t].key for t in side_topics}).start()
    if side_topics and not table.wait_ready(120):
        log.warning("catalog table not caught up after 120 s; starting anyway (enrichment may lag)")

    # Only failed deliveries call back into Python (the callbacks only record errors); flush() still
    # waits for every acknowledgement.
    producer = Producer(producer_config(settings.kafka, **{"client.id": app_name, "delivery.report.only.error": True}))
    errors: list[str] = []
    dlq = DeadLetters(producer, app_name, metrics, errors)
    sink = GraphEmitSink(producer, metrics, settings.streaming.dedup_window_s, dead_letter_errors=errors,
                         significant=spec.significant_properties(),
                         max_window_s=settings.streaming.dedup_window_cap_s)
    lag = LagTracker(settings.kafka, [topic], metrics).start()

    def on_processing_error(exc: Exception, row: Row | None, logger: logging.Logger) -> bool:
        # One record failed in an unexpected way: dead-letter it and keep going (never crash on data).
        if row is None:
            return False
        logger.warning("processing error at %s[%s]@%s: %r", row.topic, row.partition, row.offset, exc)
        raw = row.value if isinstance(row.value, bytes) else None
        dlq.send(topic, "processing_error", f"{type(exc).__name__}: {exc}", raw, row.key, row.partition, row.offset)
        return True

    app = make_application(settings, app_spec, on_message_processed=lag.on_processed,
                           on_processing_error=on_processing_error, producer_extra_config={"linger.ms": 5})
    sdf = app.dataframe(app.topic(topic, value_deserializer="bytes", key_deserializer="bytes"))
    build_pipeline(sdf, spec, topic, decode=decode, lookup=table.get, dead_letters=dlq, metrics=metrics, sink=sink,
                   guard=TimeGuard(settings.streaming.max_clock_skew_ms))
    log.info("processor %s: %s -> %s (window %.1f s growing to %.1f s, group %s)", app_name, topic,
             sorted({graph_topic(r.kind, r.type) for r in mapping.records}), settings.streaming.dedup_window_s,
             settings.streaming.dedup_window_cap_s, app_spec.consumer_group)
    try:
        app.run()
    finally:
        sink.close()
        lag.stop()
        table.stop()
        producer.flush(30)
