"""The generator against the real Kafka + schema registry: produce, consume back, decode.

Robust to shared topics: the run uses a unique id prefix and reads back exactly the offset ranges
its own deliveries reported (other tests may write to the same topics concurrently).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from rdg_platform.avro import AvroSerde, DecodeError
from rdg_platform.generator import (
    BAD_HEADER,
    EXPECTED_REASON,
    EventEncoder,
    GeneratorConfig,
    ProduceSummary,
    generate_events,
    run_generator,
)
from rdg_platform.kafka_client import client_config
from rdg_platform.model import BadEventError, GraphSpec, map_event
from rdg_platform.model.mapping import to_epoch_ms
from rdg_platform.settings import Settings
from rdg_platform.topology import ensure_topics
from tests.support.session import as_role

pytestmark = pytest.mark.integration

# (topic, key, value, headers, partition, Kafka timestamp ms)
Rec = tuple[str, bytes | None, bytes, dict[str, bytes], int, int]


def _consume_ranges(cfg: Settings, offsets: dict[tuple[str, int], list[int]], timeout_s: float = 60.0) -> list[Rec]:
    """Every record in the given [first, last] offset ranges as :data:`Rec`."""
    c = Consumer(client_config(cfg.kafka, **{"group.id": f"rdg-test-gen-{uuid.uuid4().hex}",
                                             "enable.auto.commit": False, "enable.partition.eof": False}))
    c.assign([TopicPartition(t, p, first) for (t, p), (first, _last) in offsets.items()])
    pending = {(t, p): last for (t, p), (_first, last) in offsets.items()}
    out: list[Rec] = []
    deadline = time.monotonic() + timeout_s
    try:
        while pending and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=1.0):
                if m.error():
                    raise AssertionError(f"consume error: {m.error()}")
                tp = (m.topic() or "", m.partition() or 0)
                last = pending.get(tp)
                if last is None or (m.offset() or 0) > last:
                    continue
                out.append((tp[0], m.key(), m.value() or b"", dict(m.headers() or []), tp[1], m.timestamp()[1]))
                if m.offset() == last:
                    pending.pop(tp)
                    c.pause([TopicPartition(tp[0], tp[1])])
    finally:
        c.close()
    assert not pending, f"did not read back all produced offsets; missing {pending}"
    return out


@pytest.fixture(scope="module")
def run(services: object, cfg: Settings, spec: GraphSpec) -> tuple[GeneratorConfig, ProduceSummary, list[Rec]]:
    ensure_topics(cfg.kafka.bootstrap_servers, spec, admin_conf=client_config(cfg.kafka))
    gcfg = GeneratorConfig(members=25, seed=20260101, start_ms=int(time.time()) * 1000, duration_s=600.0,
                           bad_fraction=0.05, titles=40, games=8, id_prefix=f"it{uuid.uuid4().hex[:8]}-")
    # Produced with the least privilege a producing service has (write source topics, use the registry).
    summary = run_generator(gcfg, as_role(cfg, "upstream"), track_offsets=True)
    return gcfg, summary, _consume_ranges(cfg, summary.offsets)


def test_consumed_events_decode_and_equal_the_deterministic_stream(
        run: tuple[GeneratorConfig, ProduceSummary, list[Rec]], cfg: Settings) -> None:
    gcfg, summary, recs = run
    mine = [r for r in recs if r[1] is not None and r[1].decode().startswith(gcfg.id_prefix)]
    good = [r for r in mine if BAD_HEADER not in r[3]]
    assert Counter(r[0] for r in good) == summary.counts
    assert summary.counts["member.playback"] > 0 and summary.counts["catalog.titles"] == 40
    with AvroSerde.from_settings(cfg.registry) as serde:
        decoded = []
        partition_of: dict[tuple[str, bytes], int] = {}
        for topic, key, value, _h, partition, ts in good:
            _sid, rec = serde.decode_for_topic(topic, value)
            assert key is not None
            if topic.startswith("member."):
                assert key.decode() == rec["account_id"]
            # the Kafka timestamp is the event time; one key, one partition (the keyed partitioner)
            assert ts == to_epoch_ms(rec["event_time"] if topic.startswith("member.") else rec["updated_at"])
            assert partition_of.setdefault((topic, key), partition) == partition
            decoded.append((topic, {k: (to_epoch_ms(v) if k in ("event_time", "updated_at") else v)
                                    for k, v in rec.items()}))
        # Same seed + same start time => the same records, byte for byte.
        expected = [e for e in generate_events(gcfg) if e.bad is None]
        enc = EventEncoder(serde)
        assert sorted(r[2] for r in good) == sorted(enc.value(e) for e in expected)
    exp_vals: list[tuple[str, dict[str, Any]]] = []
    for e in expected:
        assert e.value is not None
        exp_vals.append((e.topic, e.value))
    def order(tv: tuple[str, dict[str, Any]]) -> tuple[str, str]:
        return tv[0], str(sorted(tv[1].items()))

    assert sorted(decoded, key=order) == sorted(exp_vals, key=order)


def test_bad_records_fail_with_the_intended_reason(
        run: tuple[GeneratorConfig, ProduceSummary, list[Rec]], cfg: Settings, spec: GraphSpec) -> None:
    gcfg, summary, recs = run
    bad = [r for r in recs if r[1] is not None and r[1].decode().startswith(gcfg.id_prefix) and BAD_HEADER in r[3]]
    assert len(bad) == sum(summary.bad.values()) > 0
    seen: Counter[str] = Counter()
    with AvroSerde.from_settings(cfg.registry) as serde:
        for topic, _key, value, headers, _p, ts in bad:
            kind = headers[BAD_HEADER].decode()
            seen[kind] += 1
            try:
                _sid, rec = serde.decode_for_topic(topic, value)
            except DecodeError as exc:
                assert exc.reason == EXPECTED_REASON[kind], (kind, exc)
                continue
            assert kind in ("missing_field", "future_event_time"), f"{kind} record decoded fine"
            with pytest.raises(BadEventError) as bexc:  # judged against the Kafka timestamp, as a replay is
                map_event(spec, topic, rec, lambda _t, _k: None, reference_ms=ts)
            assert bexc.value.reason == EXPECTED_REASON[kind]
    assert len(seen) >= 3, seen
