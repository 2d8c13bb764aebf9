"""Encode generated events and produce them to Kafka (the I/O half of the generator)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from rdg_platform.avro.serde import AvroSerde
from rdg_platform.gcpause import gc_paused
from rdg_platform.generator.journeys import Event, GeneratorConfig
from rdg_platform.generator.render import (
    Batch,
    EventEncoder,
    can_fork_worker,
    encoded_batches,
    worker_batches,
)
from rdg_platform.kafka_client import client_config
from rdg_platform.settings import KafkaSettings

# Generating in a worker process pays off only with a core to spare beyond the produce loop, librdkafka's
# threads and (locally) the broker: measured on 2 cores it is slower than generating in-process.
_WORKER_MIN_CORES = 4


class ProduceError(RuntimeError):
    """Some records were not delivered; the message says how many and the first errors."""


class DeliveryTracker:
    """The producer's delivery callback (set once in the config, not per record): counts failures,
    keeps the first errors, and optionally each partition's offset range of the run."""

    def __init__(self, track_offsets: bool = False) -> None:
        self.track_offsets = track_offsets
        self.failed = 0
        self.errors: list[str] = []
        # (topic, partition) -> [first offset, last offset]
        self.offsets: dict[tuple[str, int], list[int]] = {}

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")
            return
        if self.track_offsets:
            key = (msg.topic() or "", msg.partition() or 0)
            off = msg.offset() or 0
            rng = self.offsets.get(key)
            if rng is None:
                self.offsets[key] = [off, off]
            else:
                rng[0] = min(rng[0], off)
                rng[1] = max(rng[1], off)


def producer_config(kafka: KafkaSettings, extra: Mapping[str, Any] | None = None, *,
                    tracker: DeliveryTracker | None = None) -> dict[str, Any]:
    """The client settings of ``kafka`` (bootstrap and security) plus throughput-oriented producer
    settings: batches (linger 20 ms, 1 MiB), lz4, idempotence so a retried batch is not duplicated,
    and delivery reports only for failures (a Python callback per successful record would cost more
    than the encoding) unless the tracker tracks offsets."""
    conf: dict[str, Any] = client_config(kafka)
    conf.update({
        "linger.ms": 20,
        "batch.size": 1_048_576,
        "compression.type": "lz4",
        "enable.idempotence": True,
        "acks": "all",
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 262_144,
        "delivery.report.only.error": not (tracker is not None and tracker.track_offsets),
    })
    if tracker is not None:
        conf["on_delivery"] = tracker
    conf.update(extra or {})
    return conf


def make_producer(kafka: KafkaSettings, *, track_offsets: bool = False,
                  extra: Mapping[str, Any] | None = None) -> tuple[Producer, DeliveryTracker]:
    """A producer configured by :func:`producer_config` and its delivery tracker."""
    tracker = DeliveryTracker(track_offsets)
    return Producer(producer_config(kafka, extra, tracker=tracker)), tracker


@dataclass
class ProduceSummary:
    """Counts per topic (good records), bad records per (topic, kind), timing and failures."""

    counts: Counter[str] = field(default_factory=Counter)
    bad: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    # (topic, partition) -> [first offset, last offset] of this run, when track_offsets=True
    offsets: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + sum(self.bad.values())

    @property
    def events_per_s(self) -> float:
        return self.total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def table(self) -> str:
        """A small plain-text table of the counts per topic."""
        topics = sorted(set(self.counts) | {t for t, _ in self.bad})
        lines = [f"{'topic':<20} {'good':>10} {'bad':>8}"]
        for t in topics:
            nbad = sum(n for (bt, _k), n in self.bad.items() if bt == t)
            lines.append(f"{t:<20} {self.counts[t]:>10} {nbad:>8}")
        lines.append(f"{'total':<20} {sum(self.counts.values()):>10} {sum(self.bad.values()):>8}")
        kinds = Counter[str]()
        for (_t, k), n in self.bad.items():
            kinds[k] += n
        if kinds:
            lines.append("bad records by kind: " + ", ".join(f"{k}={n}" for k, n in sorted(kinds.items())))
        lines.append(f"{self.total} records in {self.elapsed_s:.2f}s ({self.events_per_s:,.0f}/s)"
                     + (f", {self.failed} FAILED" if self.failed else ""))
        return "\n".join(lines)


def produce_batches(batches: Iterable[Batch], producer: Producer, tracker: DeliveryTracker, summary: ProduceSummary, *,
                    rate: float = 0.0, progress: Callable[[int], None] | None = None,
                    flush_timeout_s: float = 120.0) -> ProduceSummary:
    """Produce ready :data:`~rdg_platform.generator.render.Record` batches and flush; fills ``summary``'s
    timing and failures (its counts are kept by whoever built the batches).

    The loop does nothing per record but the ``produce`` call: polling, progress and pacing happen
    every ``step`` records. ``rate`` > 0 paces the sends to that many records per wall-clock second.
    Raises :class:`ProduceError` if any record was not delivered.
    """
    produce = producer.produce
    poll = producer.poll
    t0 = time.perf_counter()
    step = 1000 if rate <= 0 else max(1, min(1000, int(rate / 50)))
    n = 0
    chunk: Batch = []
    it = iter(batches)
    while True:
        # One window at a time without the cyclic GC, from its generation to its last produce call:
        # its tens of thousands of record tuples are then freed before any collection has walked
        # them (pausing only the generation would defer that walk, not save it). Nothing here makes
        # reference cycles; the collector runs between windows as usual.
        with gc_paused():
            batch = next(it, None)
            if batch is None:
                break
            for i in range(0, len(batch), step):
                chunk = batch[i:i + step] if len(batch) > step else batch
                for topic, value, key, ts, headers, _src in chunk:
                    try:
                        # Positional: the same call as produce(topic, value, key, timestamp=ts, headers=headers)
                        # (partition -1 = the partitioner, no per-record callbacks) without parsing keyword
                        # arguments, ~30% of the call's cost. The order is the C signature's (topic, value,
                        # key, partition, callback, on_delivery, timestamp, headers) in confluent-kafka 2.x;
                        # the integration test checks the timestamps and partitions that arrive.
                        produce(topic, value, key, -1, None, None, ts, headers)
                    except BufferError:
                        _produce_when_room(producer, topic, value, key, ts, headers)
                n += len(chunk)
                poll(0)
                if progress is not None:
                    progress(len(chunk))
                if rate > 0:
                    ahead = t0 + n / rate - time.perf_counter()
                    if ahead > 0:
                        time.sleep(ahead)
            batch = chunk = []  # drop the window's records while the collector is still paused
    remaining = producer.flush(flush_timeout_s)
    summary.elapsed_s = time.perf_counter() - t0
    summary.failed = tracker.failed + remaining
    summary.errors = list(tracker.errors)
    summary.offsets = tracker.offsets
    if remaining:
        summary.errors.append(f"{remaining} records still queued after a {flush_timeout_s}s flush")
    if summary.failed:
        raise ProduceError(f"{summary.failed} of {n} records were not delivered: {'; '.join(summary.errors)}")
    return summary


def _produce_when_room(producer: Producer, topic: str, value: bytes, key: bytes | None, ts: int,
                       headers: list[tuple[str, bytes]] | None) -> None:
    """The local queue is full: let librdkafka drain it until the record fits."""
    while True:
        producer.poll(0.05)
        try:
            producer.produce(topic, value, key, timestamp=ts, headers=headers)
            return
        except BufferError:
            continue


def produce_generated(cfg: GeneratorConfig, producer: Producer, tracker: DeliveryTracker, serde: AvroSerde, *,
                      rate: float = 0.0, progress: Callable[[int], None] | None = None,
                      flush_timeout_s: float = 120.0, topic_map: Mapping[str, str] | None = None,
                      worker: bool | None = None) -> ProduceSummary:
    """Generate ``cfg``'s stream and produce it: what ``rdg generate`` runs (the records and their order
    are those of ``produce_events(generate_events(cfg), ...)``, rendered by
    :func:`rdg_platform.generator.render.encoded_batches` without per-record Event dicts).

    ``worker`` generates in a forked worker process pipelined with the produce loop (see
    :func:`~rdg_platform.generator.render.worker_batches`); the default is to do so from
    ``_WORKER_MIN_CORES`` cores up. False keeps everything in this process.
    """
    summary = ProduceSummary()
    if worker is None:
        worker = can_fork_worker(min_cores=_WORKER_MIN_CORES)
    make = worker_batches if worker else encoded_batches
    batches = make(cfg, serde, summary.counts, summary.bad, topic_map)
    return produce_batches(batches, producer, tracker, summary, rate=rate, progress=progress,
                           flush_timeout_s=flush_timeout_s)


def event_batches(events: Iterable[Event], encoder: EventEncoder, summary: ProduceSummary,
                  topic_map: Mapping[str, str] | None = None, size: int = 1000) -> Iterator[Batch]:
    """Encode :class:`Event` s into record batches, counting them into ``summary``."""
    tmap = dict(topic_map or {})
    counts, bad = summary.counts, summary.bad
    batch: Batch = []
    for ev in events:
        batch.append((tmap.get(ev.topic, ev.topic), encoder.value(ev), ev.key.encode(), ev.timestamp_ms,
                      ev.headers, None))
        if ev.bad is None:
            counts[ev.topic] += 1
        else:
            bad[(ev.topic, ev.bad)] += 1
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def produce_events(events: Iterable[Event], producer: Producer, tracker: DeliveryTracker, serde: AvroSerde, *,
                   rate: float = 0.0, progress: Callable[[int], None] | None = None,
                   flush_timeout_s: float = 120.0, topic_map: Mapping[str, str] | None = None) -> ProduceSummary:
    """Encode and produce any ``events`` with a producer from :func:`make_producer`; flushes at the end.

    ``rate`` > 0 paces the sends to that many records per wall-clock second (event times are not
    affected). ``topic_map`` sends a logical topic's records to another Kafka topic (a sandbox, as
    the benchmark does) while encoding them with the logical topic's schema and subject; counts are
    kept per logical topic. Raises :class:`ProduceError` if any record was not delivered. For the
    generator's own stream :func:`produce_generated` sends the same records faster.
    """
    summary = ProduceSummary()
    step = 1000 if rate <= 0 else max(1, min(1000, int(rate / 50)))
    batches = event_batches(events, EventEncoder(serde), summary, topic_map, size=step)
    return produce_batches(batches, producer, tracker, summary, rate=rate, progress=progress,
                           flush_timeout_s=flush_timeout_s)


def make_progress(quiet: bool, total: int | None = None) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A tqdm progress callback (None when quiet or stderr is not a terminal) and its closer."""
    if quiet or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="ev", unit_scale=True, desc="generate", file=sys.stderr)
    return bar.update, bar.close
