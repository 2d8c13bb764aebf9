"""Re-archiving an hour whose records Kafka no longer retains is refused, and the hour stays intact.

Retention is made to pass for real: ``DeleteRecords`` moves a partition's log start offset exactly as
retention does (Kafka's retention deletes whole segments and advances the same offset), on a private
topic, so nothing shared is touched. The archive is the real writer (:func:`archive_window`: Kafka
read, registry-decoded Avro, Iceberg commit) into a private SQLite catalog.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pyiceberg.catalog.sql import SqlCatalog

from rdg_platform.avro import AvroSerde
from rdg_platform.kafka_client import client_config, security_config
from rdg_platform.lakehouse.archive import (
    SNAPSHOT_OFFSETS,
    SNAPSHOT_TOPIC,
    SNAPSHOT_WINDOW_START,
    ArchiveRefusedError,
    archive_identifier,
    archive_window,
    read_archive,
    recorded_windows,
)
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.model import GraphSpec
from rdg_platform.settings import Settings

pytestmark = pytest.mark.integration

HOUR = datetime(2021, 1, 2, tzinfo=UTC) + timedelta(hours=random.Random(uuid.uuid4().int).randrange(8000))
START_MS = int(HOUR.timestamp() * 1000)
END_MS = START_MS + 3_600_000
RETENTION_MS = 72 * 3_600_000
PER_PARTITION = 20


@pytest.fixture(scope="module")
def topic(services: object, cfg: Settings) -> Iterator[str]:
    name = f"rdgtest.archsafe.{uuid.uuid4().hex[:10]}"
    admin = AdminClient(client_config(cfg.kafka))
    fut = admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1,
                                        config={"retention.ms": str(RETENTION_MS)})])[name]
    fut.result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture(scope="module")
def serde(cfg: Settings, spec: GraphSpec, topic: str) -> Iterator[AvroSerde]:
    with AvroSerde.from_settings(cfg.registry, schemas={topic: spec.sources["member.login"].schema}) as s:
        yield s


@pytest.fixture(scope="module")
def produced(cfg: Settings, topic: str, serde: AvroSerde) -> dict[int, list[int]]:
    """PER_PARTITION login events per partition, every one inside HOUR; partition -> their offsets."""
    p = Producer(client_config(cfg.kafka, **{"linger.ms": 5}))
    offsets: dict[int, list[int]] = {0: [], 1: []}

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        offsets[msg.partition()].append(msg.offset())  # type: ignore[attr-defined]

    for part in (0, 1):
        for i in range(PER_PARTITION):
            ts = START_MS + 60_000 * i + part
            acc = f"as-{part}-{i}"
            value = serde.encode(topic, {"event_id": f"e-{part}-{i}", "event_time": ts, "account_id": acc,
                                         "profile_id": None, "device_id": f"d-{i}", "device_type": "TV",
                                         "country": "NL", "app_version": "1.0", "plan": "basic"})
            p.produce(topic, key=acc.encode(), value=value, partition=part, timestamp=ts, on_delivery=delivered)
    assert p.flush(30) == 0
    return {k: sorted(v) for k, v in offsets.items()}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> SqlCatalog:
    d: Path = tmp_path_factory.mktemp("archsafe")
    return CatalogConfig.local(d).load()


def _archive(cfg: Settings, catalog: SqlCatalog, spec: GraphSpec, topic: str, serde: AvroSerde) -> int:
    res, _window = archive_window(catalog, topic, spec.sources["member.login"].schema, serde,
                                  cfg.kafka.bootstrap_servers, START_MS, END_MS, timeout_s=30,
                                  consumer_config=security_config(cfg.kafka))
    return res.rows


def _coords(catalog: SqlCatalog, topic: str) -> list[tuple[int, int]]:
    data = read_archive(catalog, topic, START_MS, END_MS)
    return sorted(zip(data.column("kafka_partition").to_pylist(), data.column("kafka_offset").to_pylist(),
                      strict=True))


def _expire(cfg: Settings, topic: str, partition: int, before: int) -> None:
    """Advance the partition's log start offset to ``before`` (what retention does)."""
    admin = AdminClient(client_config(cfg.kafka))
    for fut in admin.delete_records([TopicPartition(topic, partition, before)]).values():
        fut.result(30)


@pytest.fixture(scope="module")
def archived(cfg: Settings, catalog: SqlCatalog, spec: GraphSpec, topic: str, serde: AvroSerde,
             produced: dict[int, list[int]]) -> list[tuple[int, int]]:
    assert _archive(cfg, catalog, spec, topic, serde) == 2 * PER_PARTITION
    # While Kafka retains the hour, re-archiving replaces it with the same rows.
    assert _archive(cfg, catalog, spec, topic, serde) == 2 * PER_PARTITION
    coords = _coords(catalog, topic)
    assert coords == [(p, o) for p in (0, 1) for o in produced[p]]
    return coords


def test_snapshot_summary_records_topic_and_offset_ranges(archived: list[tuple[int, int]], catalog: SqlCatalog,
                                                          topic: str, produced: dict[int, list[int]]) -> None:
    table = catalog.load_table(archive_identifier(topic))
    snap = table.current_snapshot()
    assert snap is not None and snap.summary is not None
    props = snap.summary.additional_properties
    assert props[SNAPSHOT_TOPIC] == topic and int(props[SNAPSHOT_WINDOW_START]) == START_MS
    ranges = json.loads(props[SNAPSHOT_OFFSETS])
    for p in (0, 1):
        r = ranges[str(p)]
        assert (r["min_offset"], r["max_offset"], r["records"]) == (produced[p][0], produced[p][-1], PER_PARTITION)
    assert recorded_windows(table)[START_MS] == ranges


def test_partially_expired_hour_is_refused_and_intact(archived: list[tuple[int, int]], cfg: Settings,
                                                      catalog: SqlCatalog, spec: GraphSpec, topic: str,
                                                      serde: AvroSerde, produced: dict[int, list[int]]) -> None:
    first = produced[0][0]
    _expire(cfg, topic, 0, first + 5)
    with pytest.raises(ArchiveRefusedError) as err:
        _archive(cfg, catalog, spec, topic, serde)
    msg = str(err.value)
    assert f"{topic} hour {HOUR.strftime('%Y-%m-%dT%H:%MZ')}" in msg
    assert f"retention.ms={RETENTION_MS}" in msg
    assert f"partition 0: earliest retained offset {first + 5} > first archived offset {first}" in msg
    assert "partition 1" not in msg  # still complete there
    assert _coords(catalog, topic) == archived


def test_fully_expired_hour_is_refused_and_intact(archived: list[tuple[int, int]], cfg: Settings,
                                                  catalog: SqlCatalog, spec: GraphSpec, topic: str,
                                                  serde: AvroSerde, produced: dict[int, list[int]]) -> None:
    for p in (0, 1):
        _expire(cfg, topic, p, produced[p][-1] + 1)
    with pytest.raises(ArchiveRefusedError) as err:
        _archive(cfg, catalog, spec, topic, serde)
    msg = str(err.value)
    for p in (0, 1):
        assert (f"partition {p}: earliest retained offset {produced[p][-1] + 1} > first archived offset "
                f"{produced[p][0]}") in msg
    assert "this read found 0" in msg
    assert _coords(catalog, topic) == archived
