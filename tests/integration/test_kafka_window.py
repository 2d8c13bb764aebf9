"""``read_window`` against the real broker: exactly the records whose timestamps fall in the window,
whatever their order in the log, with the scanned offset ranges reported."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from rdg_platform.kafka_client import client_config, security_config
from rdg_platform.lakehouse.kafka_window import KafkaReadError, WindowRead, read_window
from rdg_platform.settings import Settings

pytestmark = pytest.mark.integration

HOUR = 3_600_000
H = 1_700_000_000_000 // HOUR * HOUR


@pytest.fixture()
def topic(services: object, cfg: Settings) -> Iterator[str]:
    name = f"rdgtest.window.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(client_config(cfg.kafka))
    admin.create_topics([NewTopic(name, 3, 1)])[name].result(30)
    yield name
    for fut in admin.delete_topics([name]).values():
        fut.result(30)


def _produce(cfg: Settings, topic: str, records: list[tuple[int, int, bytes | None]]) -> None:
    """(partition, timestamp ms, key) records, in this order; the value names the record."""
    prod = Producer(client_config(cfg.kafka, **{"linger.ms": 5}))
    for i, (p, ts, key) in enumerate(records):
        prod.produce(topic, value=f"v{i}".encode(), key=key, partition=p, timestamp=ts)
    assert prod.flush(30) == 0


def test_window_is_exact_across_out_of_order_timestamps(cfg: Settings, topic: str) -> None:
    records: list[tuple[int, int, bytes | None]] = []
    for i in range(3000):  # more than one consume chunk per partition
        p = i % 3
        if i % 10 == 0:
            ts = H - 1 - i          # the previous hour, interleaved (a replay stamping old times)
        elif i % 10 == 1:
            ts = H + HOUR + i       # the next hour
        else:
            ts = H + i * 1000       # in the window
        records.append((p, ts, None if i % 7 == 0 else f"k{i}".encode()))
    records.append((1, H, b"edge-start"))                  # start bound is inclusive
    records.append((2, H + HOUR, b"edge-end"))             # end bound is exclusive
    _produce(cfg, topic, records)

    want = {f"v{i}".encode(): (p, ts, key) for i, (p, ts, key) in enumerate(records) if H <= ts < H + HOUR}
    res = WindowRead(topic, H, H + HOUR)
    got: dict[bytes, tuple[int, int, bytes | None]] = {}
    batches = list(read_window(cfg.kafka.bootstrap_servers, topic, H, H + HOUR, batch_size=700, result=res,
                                   consumer_config=security_config(cfg.kafka)))
    assert len(batches) > 1  # batch_size is honoured
    for b in batches:
        assert len(b.partitions) == len(b.offsets) == len(b.timestamps) == len(b.keys) == len(b.values)
        assert bool(np.all((b.timestamps >= H) & (b.timestamps < H + HOUR)))
        for p, ts, key, value in zip(b.partitions.tolist(), b.timestamps.tolist(), b.keys, b.values, strict=True):
            assert value is not None and value not in got
            got[value] = (p, ts, key)
    assert got == want
    assert res.records == len(want)
    # Scanning starts at each partition's first record stamped >= H: only leading old records are skipped.
    assert res.scanned == sum(r.end_offset - r.start_offset for r in res.ranges.values())
    assert res.scanned == len(records) - 1  # only v0 (partition 0, offset 0) precedes its partition's start
    assert res.bytes_read == sum(len(v) for v in want) + sum(len(k) for _p, _t, k in want.values() if k)
    for p, rng in res.ranges.items():
        mine = [off for b in batches for q, off in zip(b.partitions.tolist(), b.offsets.tolist(), strict=True)
                if q == p]
        assert rng.records == len(mine) and rng.min_offset == min(mine) and rng.max_offset == max(mine)


def test_empty_window_and_missing_topic(cfg: Settings, topic: str) -> None:
    _produce(cfg, topic, [(0, H, b"a"), (1, H + 1, b"b")])
    res = WindowRead(topic, H + 5 * HOUR, H + 6 * HOUR)
    assert list(read_window(cfg.kafka.bootstrap_servers, topic, H + 5 * HOUR, H + 6 * HOUR, result=res,
                            consumer_config=security_config(cfg.kafka))) == []
    assert res.records == 0
    with pytest.raises(KafkaReadError, match="not available"):
        list(read_window(cfg.kafka.bootstrap_servers, f"{topic}.nope", H, H + HOUR, timeout_s=5,
                         consumer_config=security_config(cfg.kafka)))
