"""Side inputs (``catalog.titles``, ``catalog.games``) as a process-local, always-current lookup table.

Why not Quix state: state in Quix is partitioned like the input topic, so a processor replica only
sees the catalog partitions assigned to it, and catalog topics have a different partition count than
member topics. Enrichment needs the *whole* catalog in every replica: the Kafka Streams "global table"
pattern. Each :class:`CatalogTable` reads its compacted topics from the beginning with its own
group-less consumer (manual assignment, no commits), keeps the latest record per key in a dict, and
keeps tailing, so a catalog update reaches events processed after it arrives. ``wait_ready`` blocks
until the end offsets seen at start are reached, so the first member events are enriched with the
catalog as it was when the processor started. A tombstone (null value) removes the key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from rdg_platform.kafka_client import client_config
from rdg_platform.settings import KafkaSettings

log = logging.getLogger(__name__)

Decoder = Callable[[str, bytes], Mapping[str, Any]]


class CatalogTable:
    """Latest record per (topic, key) of the side-input topics, kept current by a daemon thread."""

    def __init__(self, kafka: KafkaSettings, topics: Sequence[str], decode: Decoder,
                 key_fields: Mapping[str, str] | None = None) -> None:
        self.kafka = kafka
        self.topics = list(topics)
        self._decode = decode
        self._key_fields = dict(key_fields or {})
        self._data: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.updates = 0

    # The mapping's Lookup signature: (side-input topic, key) -> record or None.
    def get(self, topic: str, key: str) -> Mapping[str, Any] | None:
        with self._lock:
            return self._data.get((topic, key))

    def put(self, topic: str, key: str, record: Mapping[str, Any] | None) -> None:
        """Apply one side-input record (also how unit tests and backfills seed the table)."""
        with self._lock:
            if record is None:
                self._data.pop((topic, key), None)
            else:
                self._data[(topic, key)] = record
            self.updates += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def start(self) -> CatalogTable:
        if not self.topics:
            self._ready.set()
            return self
        self._thread = threading.Thread(target=self._run, name="rdg-catalog", daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> bool:
        return self._ready.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        consumer = Consumer(client_config(self.kafka, **{
            "group.id": "rdg-catalog-table-unused", "enable.auto.commit": False, "enable.partition.eof": False,
            "auto.offset.reset": "earliest"}))
        try:
            tps: list[TopicPartition] = []
            targets: dict[tuple[str, int], int] = {}
            while not self._stop.is_set() and not tps:
                try:
                    md = consumer.list_topics(timeout=10)
                except Exception as exc:  # broker not reachable yet: keep trying
                    log.warning("catalog table: cannot list topics: %s", exc)
                    time.sleep(1)
                    continue
                missing = [t for t in self.topics if t not in md.topics]
                if missing:
                    log.warning("catalog table: topics %s do not exist yet; retrying", missing)
                    time.sleep(2)
                    continue
                for t in self.topics:
                    for p in sorted(md.topics[t].partitions):
                        tps.append(TopicPartition(t, p, OFFSET_BEGINNING))
                        lo, hi = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                        if hi > lo:
                            targets[(t, p)] = hi
            consumer.assign(tps)
            if not targets:
                self._ready.set()
            while not self._stop.is_set():
                msgs = consumer.consume(500, timeout=0.5)
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("catalog table: consumer error %s", err)
                        continue
                    self._apply(m.topic(), m.key(), m.value())
                    tp = (m.topic(), m.partition())
                    if tp in targets and m.offset() + 1 >= targets[tp]:
                        del targets[tp]
                        if not targets:
                            log.info("catalog table ready: %d entries", len(self))
                            self._ready.set()
        finally:
            consumer.close()

    def _apply(self, topic: str, raw_key: bytes | None, value: bytes | None) -> None:
        key = raw_key.decode("utf-8", "replace") if raw_key is not None else None
        if value is None:
            if key is not None:
                self.put(topic, key, None)
            return
        try:
            rec = self._decode(topic, value)
        except Exception as exc:  # a bad catalog record must not stop enrichment
            self.errors += 1
            log.warning("catalog table: undecodable record on %s key=%r: %s", topic, key, exc)
            return
        kf = self._key_fields.get(topic)
        if kf and rec.get(kf) is not None:
            key = str(rec[kf])
        if key is not None:
            self.put(topic, key, rec)
