"""End to end on the real services: events -> processors -> graph topics -> sinks -> Cassandra -> API.

Each test runs the real apps under the real supervisor (``local_pipeline``): its own keyspace,
consumer groups and metrics ports, a 2 s dedup window, and unique ids per run, so it shares Kafka
and Cassandra safely with every other test. Expected graphs are computed with the same pure mapping
the apps use, and compared exactly (properties and updated_at).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from rdg_platform.avro import AvroSerde, SchemaRegistry
from rdg_platform.kafka_client import client_config
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.local_services.manager import ServiceManager
from rdg_platform.model import GraphRecord
from rdg_platform.settings import KafkaSettings, Settings
from rdg_platform.streaming.supervisor import scrape_metrics
from tests.support.poll import poll_until
from tests.support.streaming import (
    LocalPipeline,
    catalog_events,
    diff_graph,
    expected_graph,
    journey_events,
    local_pipeline,
    produce_events,
    read_graph,
    wait_graph,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipe(services: object, cfg: Settings) -> Iterator[LocalPipeline]:
    with local_pipeline(cfg, window_s=2.0, name="e2e") as p:
        yield p


@pytest.fixture(scope="module")
def store(pipe: LocalPipeline) -> Iterator[GraphStore]:
    s = GraphStore.from_spec(pipe.spec, pipe.settings.cassandra)
    yield s
    s.close()


@pytest.fixture(scope="module")
def serde(cfg: Settings) -> AvroSerde:
    return AvroSerde(SchemaRegistry.from_settings(cfg.registry))


def read_topic_since(kafka: KafkaSettings, topic: str, since_ms: int, timeout_s: float = 10.0) -> list[Any]:
    """Messages of ``topic`` produced at/after ``since_ms`` (bounded read: offsets_for_times)."""
    c = Consumer(client_config(kafka, **{"group.id": f"rdg-test-reader-{uuid.uuid4().hex[:6]}",
                                         "enable.auto.commit": False, "auto.offset.reset": "latest"}))
    try:
        md = c.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p, since_ms) for p in md.topics[topic].partitions]
        start = c.offsets_for_times(parts, timeout=10)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.topics[topic].partitions}
        todo = {tp.partition for tp in start if 0 <= tp.offset < ends[tp.partition]}
        if not todo:
            return []
        c.assign([tp for tp in start if tp.partition in todo])
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                if m.error():
                    continue
                out.append(m)
                if m.offset() + 1 >= ends[m.partition()]:
                    todo.discard(m.partition())
        return out
    finally:
        c.close()


def test_journey_dedup_enrichment_dlq_and_every_good_record(pipe: LocalPipeline, store: GraphStore, cfg: Settings,
                                                             serde: AvroSerde) -> None:
    run = uuid.uuid4().hex[:8]
    t0 = int(time.time() * 1000)
    since = t0 - 1000
    cat = catalog_events(run, t0)
    produce_events(pipe.settings.kafka, serde, cat)
    # the catalog reaches Cassandra through its own processors; wait so enrichment has it too
    assert not wait_graph(store, expected_graph(cat), 60)
    events = journey_events(run, t0, accounts=3, heartbeats=20)
    wrong_schema = serde.encode("catalog.titles", cat[0][2])
    missing = dict(events[0][2], device_id="")
    bad = [("member.playback", f"bad-{run}-0", b"\x07garbage"),
           ("member.playback", f"bad-{run}-1", wrong_schema),
           ("member.login", f"bad-{run}-2", serde.encode("member.login", missing))]
    produce_events(pipe.settings.kafka, serde, events, raw=bad)

    expected = expected_graph(cat + events)
    problems = wait_graph(store, expected, 60)
    assert not problems, problems[:10]

    # the journey through the HTTP API: account -> has_profile -> started_watching, enriched title
    from rdg_platform.serving.app import create_app
    from tests.support.serving import serve_in_thread

    assert cfg.api.token is not None
    with serve_in_thread(create_app(pipe.spec, store=store, settings=cfg)) as url:
        r = httpx.post(f"{url}/v1/traverse", headers={"Authorization": f"Bearer {cfg.api.token.get_secret_value()}"},
                       json={
            "start": {"type": "account", "id": f"acc-{run}-1"},
            "hops": [{"edge": "has_profile", "direction": "out"}, {"edge": "started_watching", "direction": "out"}],
            "include_nodes": True}, timeout=10)
        assert r.status_code == 200, r.text
        levels = r.json()["levels"]
        sw = levels[1]["edges"]
        assert [(e["src"], e["dst"]) for e in sw] == [(f"p-{run}-1", f"t-{run}-1")]
        assert sw[0]["properties"]["action"] == "STOP" and sw[0]["properties"]["position_ms"] == 210_000
        titles = {n["id"]: n for n in levels[1]["nodes"]}
        assert titles[f"t-{run}-1"]["properties"]["name"] == f"Title {run} 1"
        assert titles[f"t-{run}-1"]["properties"]["genres"] == ["drama", "g1"]

    # heartbeats collapsed: 22 playback updates per (profile, title) became a few graph messages: the
    # leading edge (START), the significant action changes (START -> HEARTBEAT, HEARTBEAT -> STOP) and
    # at most one trailing emission per window
    msgs = read_topic_since(pipe.settings.kafka, "graph.edge.started_watching", since)
    mine = [m for m in msgs if m.key().decode().startswith(f"p-{run}-")]
    assert 3 * 3 <= len(mine) <= 3 * 5, len(mine)

    # bad records are in the DLQs with their reasons and source coordinates
    dlq = [m for t in ("member.playback.dlq", "member.login.dlq")
           for m in read_topic_since(pipe.settings.kafka, t, since)
           if (m.key() or b"").decode().startswith(f"bad-{run}-")]
    reasons = {m.key().decode(): dict(m.headers() or []) for m in dlq}
    assert reasons[f"bad-{run}-0"]["rdg.dlq.reason"] == b"not_confluent_framing"
    assert reasons[f"bad-{run}-1"]["rdg.dlq.reason"] == b"schema_mismatch"
    assert reasons[f"bad-{run}-2"]["rdg.dlq.reason"] == b"missing_field"
    assert reasons[f"bad-{run}-0"]["rdg.source.topic"] == b"member.playback"
    assert int(reasons[f"bad-{run}-0"]["rdg.source.offset"]) >= 0

    # counted in metrics; status reports every app running
    states = {s.name: s for s in pipe.supervisor.status()}
    assert all(s.running for s in states.values()), {n: s.state for n, s in states.items()}
    m = scrape_metrics(states["member_playback-processor"].metrics_port or 0)
    assert m.get("rdg_dlq_records_total", 0) >= 2 and m.get("rdg_dedup_suppressed_total", 0) >= 40
    ms = scrape_metrics(states["sink-edges-activity"].metrics_port or 0)
    assert ms.get("rdg_cassandra_writes_total", 0) >= 3 and ms.get("rdg_event_to_write_seconds_count", 0) >= 3

    # every app reports its real input rate (IN/S of `rdg apps status`), sinks included, however
    # rarely it is read: one more burst, then status (one scrape per app per call) must show it
    produce_events(pipe.settings.kafka, serde, journey_events(f"{run}r", int(time.time() * 1000), accounts=2))
    rates: dict[str, float | None] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the sinks see the burst one dedup window later
        rates = {s.name: s.rate for s in pipe.supervisor.status() if s.name.startswith(("sink-", "member_"))}
        if all(rates.values()):
            break
        time.sleep(1.0)
    assert rates and all(rates.values()), rates


def test_quiet_stream_single_event_is_emitted_by_the_clock(pipe: LocalPipeline, store: GraphStore,
                                                            serde: AvroSerde) -> None:
    run = uuid.uuid4().hex[:8]
    t0 = int(time.time() * 1000)
    ev = journey_events(run, t0, accounts=1, heartbeats=0)[:1]  # one login, then silence
    sent = time.monotonic()
    produce_events(pipe.settings.kafka, serde, ev)
    assert not wait_graph(store, expected_graph(ev), 30)
    took = time.monotonic() - sent
    assert took <= 2.0 + 3.0, f"single event took {took:.1f}s with a 2 s window"


def _kill(pipe: LocalPipeline, name: str) -> int:
    pid = pipe.supervisor.pid(name)
    assert pid, f"{name} not running"
    os.kill(pid, signal.SIGKILL)
    return pid


def _wait_restarted(pipe: LocalPipeline, name: str, old_pid: int, timeout_s: float = 60) -> None:
    poll_until(lambda: pipe.supervisor.pid(name), lambda pid: bool(pid) and pid != old_pid,
               what=f"{name} to be restarted", timeout_s=timeout_s, interval_s=0.2)


def _renamed(graph: dict[str, GraphRecord], old: str, new: str) -> dict[str, GraphRecord]:
    out = {}
    for r in graph.values():
        rr = GraphRecord(r.kind, r.type, r.id.replace(old, new), None if r.dst is None else r.dst.replace(old, new),
                         json.loads(json.dumps(dict(r.properties)).replace(old, new)), r.updated_at)
        out[rr.dedup_key] = rr
    return out


def test_crash_of_processor_and_sink_mid_stream_gives_the_same_graph(pipe: LocalPipeline, store: GraphStore,
                                                                     serde: AvroSerde) -> None:
    t0 = int(time.time() * 1000)
    base, crash = f"b{uuid.uuid4().hex[:6]}", f"c{uuid.uuid4().hex[:6]}"
    workloads = {}
    for run in (base, crash):
        cat = catalog_events(run, t0)
        produce_events(pipe.settings.kafka, serde, cat)
        workloads[run] = cat + journey_events(run, t0, accounts=40, heartbeats=15)
    assert not wait_graph(store, expected_graph(catalog_events(crash, t0)), 60)

    # the baseline run, no crash
    produce_events(pipe.settings.kafka, serde, workloads[base][5:], rate=800)
    expected = expected_graph(workloads[base])
    assert not wait_graph(store, expected, 90)
    baseline = read_graph(store, expected.values())

    # the same workload shape under other ids, killing a processor and a sink mid-stream
    import threading

    events = workloads[crash][5:]
    producer = threading.Thread(target=produce_events, args=(pipe.settings.kafka, serde, events, 400.0))
    producer.start()
    time.sleep(1.5)
    p1 = _kill(pipe, "member_playback-processor")
    time.sleep(1.0)
    p2 = _kill(pipe, "sink-edges-activity")
    producer.join()
    _wait_restarted(pipe, "member_playback-processor", p1)
    _wait_restarted(pipe, "sink-edges-activity", p2)
    expected_crash = expected_graph(workloads[crash])
    problems = wait_graph(store, expected_crash, 240)
    assert not problems, problems[:10]
    after = read_graph(store, expected_crash.values())
    assert after == _renamed(baseline, base, crash)
    assert all(s.restarts >= 1 for s in pipe.supervisor.status(["member_playback-processor", "sink-edges-activity"]))


def test_cassandra_outage_under_load_loses_nothing(pipe: LocalPipeline, store: GraphStore, serde: AvroSerde,
                                                    services: ServiceManager) -> None:
    import threading

    run = uuid.uuid4().hex[:8]
    t0 = int(time.time() * 1000)
    cat = catalog_events(run, t0)
    produce_events(pipe.settings.kafka, serde, cat)
    assert not wait_graph(store, expected_graph(cat), 60)
    events = journey_events(run, t0, accounts=60, heartbeats=10)
    producer = threading.Thread(target=produce_events, args=(pipe.settings.kafka, serde, events, 40.0))
    producer.start()
    time.sleep(2)
    services.down(["cassandra"])
    try:
        time.sleep(30)
    finally:
        services.up(["cassandra"])
    producer.join()
    expected = expected_graph(cat + events)
    problems = wait_graph(store, expected, 180)
    assert not problems, problems[:10]
    states = pipe.supervisor.status()
    m = scrape_metrics(next(s for s in states if s.name == "sink-nodes").metrics_port or 0)
    assert m.get("rdg_sink_backpressure_total", 0) + m.get("rdg_cassandra_errors_total", 0) >= 1 or any(
        s.restarts for s in states)
    _ = diff_graph
