"""Dead-letter queues: where a streaming app sends a record it cannot process, and how an operator
inspects and re-drives them (``rdg dlq list|show|redrive``).

A bad record goes to :func:`rdg_platform.topology.dlq_topic` of the topic it was read from, with its
original key and bytes, and headers naming the reason, a detail, the source coordinates and the app.
Bad input therefore never stops an app and is never lost: the DLQ keeps it for inspection or replay.

Re-drive (:func:`redrive`): after the cause is fixed (a schema registered, a setting corrected, a
mapping deployed), the records matching a filter are produced again to their source topic with their
original key and bytes, and headers naming where they come from (``rdg.redrive.from`` = DLQ
topic/partition/offset, plus the original source coordinates and reason). Never twice: every
re-driven DLQ record is recorded in the compacted ledger topic
:data:`rdg_platform.topology.REDRIVE_LEDGER_TOPIC`, keyed by its DLQ coordinates, **in the same Kafka
transaction** as the re-driven record itself. So a record and its ledger entry are committed
together or not at all (a crash mid-way re-drives nothing twice and loses nothing), and a later
re-drive skips what the ledger holds. One fixed transactional id per group prefix fences a
concurrent re-drive: the ledger is read only after the transactions of any earlier instance were
completed or aborted, so two operators running it at once cannot both send a record. Why a ledger
and not a committed consumer group: filters differ between runs (one reason today, an offset range
tomorrow), and a group's offset would skip the records an earlier filter left behind.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from quixstreams.context import message_context

from rdg_platform.streaming.metrics import AppMetrics
from rdg_platform.topology import DLQ_SUFFIX, REDRIVE_LEDGER_TOPIC, dlq_topic

if TYPE_CHECKING:
    from rdg_platform.model.spec import GraphSpec
    from rdg_platform.settings import Settings

log = logging.getLogger(__name__)

HEADER_REASON = "rdg.dlq.reason"
HEADER_DETAIL = "rdg.dlq.detail"
HEADER_TOPIC = "rdg.source.topic"
HEADER_PARTITION = "rdg.source.partition"
HEADER_OFFSET = "rdg.source.offset"
HEADER_APP = "rdg.app"
HEADER_REDRIVE_FROM = "rdg.redrive.from"          # dlq topic/partition/offset of a re-driven record
HEADER_REDRIVE_SOURCE = "rdg.redrive.source"      # its original source topic/partition/offset
HEADER_REDRIVE_REASON = "rdg.redrive.reason"      # why it was dead-lettered
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


# ------------------------------------------------------------------------------ operations
@dataclass(frozen=True)
class DeadLetter:
    """One record of a DLQ topic, with its coordinates."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes]

    @property
    def coordinates(self) -> str:
        """``topic/partition/offset``: the record's identity (the ledger key)."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def reason(self) -> str:
        return self.headers.get(HEADER_REASON, b"unknown").decode("utf-8", "replace")

    @property
    def source_topic(self) -> str:
        """The topic it was read from (its header; else the DLQ name without the suffix)."""
        raw = self.headers.get(HEADER_TOPIC)
        if raw:
            return raw.decode()
        return self.topic[: -len(DLQ_SUFFIX)] if self.topic.endswith(DLQ_SUFFIX) else self.topic

    def header_text(self) -> dict[str, str]:
        return {k: v.decode("utf-8", "replace") for k, v in self.headers.items()}


@dataclass(frozen=True)
class RedriveFilter:
    """Which dead letters to re-drive: all of ``topics`` (DLQ topic names), narrowed by reason,
    partition and an inclusive offset range."""

    topics: tuple[str, ...]
    reason: str | None = None
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None

    def matches(self, d: DeadLetter) -> bool:
        return ((self.reason is None or d.reason == self.reason)
                and (self.partition is None or d.partition == self.partition)
                and (self.from_offset is None or d.offset >= self.from_offset)
                and (self.to_offset is None or d.offset <= self.to_offset))


@dataclass
class RedriveResult:
    matched: int = 0
    sent: list[str] = field(default_factory=list)              # DLQ coordinates re-driven now
    already: list[str] = field(default_factory=list)           # skipped: re-driven before
    by_target: Counter[str] = field(default_factory=Counter)   # source topic -> records sent


def dlq_topics(spec: GraphSpec) -> list[str]:
    """Every DLQ topic of the model: one per source topic and per graph topic."""
    return [dlq_topic(t) for t in (*spec.sources, *spec.graph_topics())]


def resolve_dlq_topic(spec: GraphSpec, name: str) -> str:
    """``name`` as a DLQ topic of the model (a source or graph topic name gets its ``.dlq``);
    raises ValueError naming the known DLQ topics otherwise."""
    known = dlq_topics(spec)
    topic = name if name.endswith(DLQ_SUFFIX) else dlq_topic(name)
    if topic not in known:
        raise ValueError(f"{name!r} is not a DLQ topic of this model (known: {', '.join(known)})")
    return topic


def _consumer(settings: Settings) -> Any:
    from confluent_kafka import Consumer

    from rdg_platform.kafka_client import client_config

    return Consumer(client_config(settings.kafka, **{
        "group.id": f"{settings.streaming.group_prefix}-dlq-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "enable.partition.eof": True, "isolation.level": "read_committed"}))


def read_topics(settings: Settings, topics: Iterable[str], *, timeout_s: float = 60.0,
                partition: int | None = None, from_offset: int | None = None) -> Iterator[DeadLetter]:
    """Every record of ``topics`` from the start (or ``from_offset``) to the end as of now, read
    without a consumer group's commits (nothing is marked as read). Topics that do not exist are
    skipped. Raises TimeoutError when the end is not reached within ``timeout_s``."""
    from confluent_kafka import KafkaError, TopicPartition

    c = _consumer(settings)
    try:
        assign: list[Any] = []
        for t in topics:
            md = c.list_topics(t, timeout=10).topics.get(t)
            if md is None or md.error is not None:
                continue
            for p in md.partitions:
                if partition is not None and p != partition:
                    continue
                low, high = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                start = max(low, from_offset) if from_offset is not None else low
                if high > start:
                    assign.append(TopicPartition(t, p, start))
        if not assign:
            return
        c.assign(assign)
        todo = {(tp.topic, tp.partition) for tp in assign}
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {sorted(todo)} did not reach the end within {timeout_s:.0f} s")
            for m in c.consume(500, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard((m.topic(), m.partition()))
                        continue
                    raise RuntimeError(f"reading {m.topic()}: {err}")
                yield DeadLetter(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(),
                                 {k: (v or b"") for k, v in (m.headers() or [])})
    finally:
        c.close()


def read_one(settings: Settings, topic: str, partition: int, offset: int) -> DeadLetter | None:
    """The record at ``topic``/``partition``/``offset`` (None when there is none)."""
    for d in read_topics(settings, [topic], partition=partition, from_offset=offset):
        if d.offset == offset:
            return d
        if d.offset > offset:
            return None
    return None


def redriven(settings: Settings) -> dict[str, dict[str, Any]]:
    """The ledger: DLQ coordinates -> what its re-drive recorded (committed entries only)."""
    out: dict[str, dict[str, Any]] = {}
    for d in read_topics(settings, [REDRIVE_LEDGER_TOPIC]):
        if d.key is None:
            continue
        if d.value is None:  # a tombstone un-records (an operator's explicit choice)
            out.pop(d.key.decode(), None)
            continue
        out[d.key.decode()] = json.loads(d.value)
    return out


def summarize(letters: Iterable[DeadLetter], ledger: Mapping[str, Any]) -> dict[str, dict[str, tuple[int, int]]]:
    """DLQ topic -> reason -> (records, of which re-driven)."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for d in letters:
        by = out.setdefault(d.topic, {})
        n, r = by.get(d.reason, (0, 0))
        by[d.reason] = (n + 1, r + (d.coordinates in ledger))
    return out


def decode_payload(spec: GraphSpec, letter: DeadLetter, decode_avro: Callable[[str, bytes], Any]) -> tuple[Any, str | None]:
    """(decoded payload, None) or (None, why it does not decode): Avro (with the registry, through
    ``decode_avro(topic, bytes)``) for source topics, JSON for graph topics."""
    src = letter.source_topic
    if letter.value is None:
        return None, "no value (null record)"
    if src in spec.sources:
        try:
            return decode_avro(src, letter.value), None
        except Exception as exc:  # DecodeError and registry errors: shown, not raised
            return None, f"{getattr(exc, 'reason', type(exc).__name__)}: {getattr(exc, 'detail', exc)}"
    try:
        return json.loads(letter.value), None
    except ValueError as exc:
        return None, f"not JSON: {exc}"


def ensure_ledger(settings: Settings, spec: GraphSpec) -> None:
    """Create the compacted ledger topic when missing (replication as the model's DLQ topics)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from rdg_platform.kafka_client import client_config
    from rdg_platform.topology import topic_specs

    admin = AdminClient(client_config(settings.kafka))
    if REDRIVE_LEDGER_TOPIC in admin.list_topics(timeout=10).topics:
        return
    rf = next((t.replication_factor for t in topic_specs(spec, settings.topics_file) if t.role == "dlq"), 1)
    fut = admin.create_topics([NewTopic(REDRIVE_LEDGER_TOPIC, 1, rf, config={
        "cleanup.policy": "compact", "retention.ms": "-1"})])[REDRIVE_LEDGER_TOPIC]
    try:
        fut.result(30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise RuntimeError(f"cannot create the re-drive ledger topic {REDRIVE_LEDGER_TOPIC}: {exc} "
                               "(creating topics needs the admin role)") from None


def redrive(settings: Settings, spec: GraphSpec, flt: RedriveFilter, *, dry_run: bool = False,
            timeout_s: float = 60.0) -> RedriveResult:
    """Send the dead letters matching ``flt`` back to their source topics, each at most once ever.

    See the module docstring for the transaction and the ledger. The re-driven record keeps its key
    and bytes; its Kafka timestamp is the time of the re-drive (it is new input: the stream judges
    it against its processing time anyway, and the hourly archive files it under the hour it is
    re-read in).
    """
    from confluent_kafka import Producer

    from rdg_platform.kafka_client import client_config

    result = RedriveResult()
    if not dry_run:
        ensure_ledger(settings, spec)
    producer: Any = None
    if not dry_run:
        producer = Producer(client_config(settings.kafka, **{
            "transactional.id": f"{settings.streaming.group_prefix}-dlq-redrive", "enable.idempotence": True}))
        # Fences any earlier instance and completes or aborts its open transaction, so the ledger
        # read below sees everything that instance will ever have committed.
        producer.init_transactions(timeout_s)
    ledger = redriven(settings)
    todo: list[DeadLetter] = []
    for d in read_topics(settings, flt.topics, timeout_s=timeout_s, partition=flt.partition,
                         from_offset=flt.from_offset):
        if not flt.matches(d):
            continue
        result.matched += 1
        if d.coordinates in ledger:
            result.already.append(d.coordinates)
        else:
            todo.append(d)
    if dry_run or not todo:
        result.sent = [d.coordinates for d in todo] if dry_run else []
        for d in todo if dry_run else ():
            result.by_target[d.source_topic] += 1
        return result
    assert producer is not None
    now = int(time.time() * 1000)
    producer.begin_transaction()
    try:
        for d in todo:
            src = d.source_topic
            original = f"{src}/{d.headers.get(HEADER_PARTITION, b'?').decode()}/{d.headers.get(HEADER_OFFSET, b'?').decode()}"
            hdrs = [(HEADER_REDRIVE_FROM, d.coordinates.encode()), (HEADER_REDRIVE_SOURCE, original.encode()),
                    (HEADER_REDRIVE_REASON, d.reason.encode())]
            produce(producer, src, d.value, d.key, hdrs, None)
            entry = {"target": src, "reason": d.reason, "source": original, "redriven_at_ms": now}
            produce(producer, REDRIVE_LEDGER_TOPIC, json.dumps(entry).encode(), d.coordinates.encode(), None, None)
            result.sent.append(d.coordinates)
            result.by_target[src] += 1
        producer.commit_transaction(timeout_s)
    except Exception:
        try:
            producer.abort_transaction(timeout_s)
        finally:
            result.sent = []
            result.by_target.clear()
        raise
    return result
