"""Unit tests of the streaming apps without a broker: build_pipeline through Quix's ``sdf.test``,
the dedup window semantics on a fake clock (incl. quiet streams), the emitter's flush-before-commit,
the Cassandra sink's retries/backpressure, the app registry, and how an app's Quix ``Application``
follows the settings."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from quixstreams import Application
from quixstreams.models import MessageContext, Topic
from quixstreams.sinks import SinkBackpressureError, SinkBatch

from rdg_platform.kv.codec import encode_props
from rdg_platform.model import GraphRecord, load_spec
from rdg_platform.model.lww import encode_value
from rdg_platform.settings import KafkaSettings, StreamingSettings, load_settings
from rdg_platform.streaming.apps import DEFAULT_SINK_GROUPS, app_specs, get_app, resolve_sink_groups
from rdg_platform.streaming.catalog import CatalogTable
from rdg_platform.streaming.dedup import DedupBuffer
from rdg_platform.streaming.dlq import DeadLetters
from rdg_platform.streaming.metrics import AppMetrics, RateMeter
from rdg_platform.streaming.processor import GraphEmitSink, build_pipeline
from rdg_platform.streaming.runtime import make_application
from rdg_platform.streaming.sink import CassandraSink, SinkSteps, build_sink_pipeline
from rdg_platform.topology import partitions_of

SPEC = load_spec()
NO_KAFKA = KafkaSettings(bootstrap="127.0.0.1:1", security_protocol="PLAINTEXT")
T0 = 1_700_000_000_000
NOW_MS = T0 + 60_000  # the processors' wall clock in these tests: a minute after the events


class FakeDecodeError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def json_decode(topic: str, data: bytes) -> Mapping[str, Any]:
    """Stands in for AvroSerde.decode_for_topic: JSON with a 'BAD' marker for undecodable bytes."""
    if data.startswith(b"BAD"):
        raise FakeDecodeError("not_confluent_framing", "magic byte is not 0")
    return json.loads(data)


class ListProducer:
    """Records produced messages; ``pending`` simulates unacknowledged messages at flush."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]] = []
        self.pending = 0

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                headers: list[tuple[str, bytes]] | None = None, on_delivery: Any = None) -> None:
        self.sent.append((topic, value, key, headers))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return self.pending

    def topics(self) -> list[str]:
        return [s[0] for s in self.sent]


def playback(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"event_id": "e1", "event_time": T0, "account_id": "a1", "profile_id": "p1",
                          "device_id": "d1", "device_type": "TV", "title_id": "t1", "episode_id": None,
                          "action": "HEARTBEAT", "position_ms": 5000, "is_live": False}
    ev.update(over)
    return ev


def make_sdf(topic: str, catalog: CatalogTable | None = None) -> tuple[Any, ListProducer, AppMetrics]:
    app = Application(broker_address="127.0.0.1:1", consumer_group="unit", loglevel="CRITICAL")
    sdf = app.dataframe(Topic(topic, value_deserializer="bytes", key_deserializer="str"))
    metrics = AppMetrics("unit")
    prod = ListProducer()
    sdf = build_pipeline(sdf, SPEC, topic, decode=json_decode, lookup=catalog.get if catalog else None,
                         dead_letters=DeadLetters(prod, "unit", metrics), metrics=metrics, clock_ms=lambda: NOW_MS)
    return sdf, prod, metrics


def run(sdf: Any, topic: str, value: bytes, offset: int = 0, key: str = "a1") -> list[GraphRecord]:
    ctx = MessageContext(topic=topic, partition=0, offset=offset, size=len(value))
    return [r[0] for r in sdf.test(value, key=key, timestamp=T0, ctx=ctx)]


def test_pipeline_maps_playback_with_catalog_enrichment() -> None:
    table = CatalogTable(NO_KAFKA, ["catalog.titles"], json_decode)
    table.put("catalog.titles", "t1", {"title_id": "t1", "name": "Dark", "kind": "SHOW", "genres": ["scifi"],
                                       "runtime_min": 50, "maturity": "16+"})
    sdf, prod, metrics = make_sdf("member.playback", table)
    recs = run(sdf, "member.playback", json.dumps(playback()).encode())
    by = {(r.kind, r.type): r for r in recs}
    assert by[("node", "title")].properties == {"name": "Dark", "kind": "SHOW", "runtime_min": 50,
                                                "genres": ["scifi"], "maturity": "16+"}
    assert by[("edge", "started_watching")].dst == "t1"
    assert prod.sent == []
    # a catalog update reaches later events
    table.put("catalog.titles", "t1", {"title_id": "t1", "name": "Dark (Director's cut)", "kind": "SHOW", "genres": []})
    recs = run(sdf, "member.playback", json.dumps(playback(event_time=T0 + 1)).encode(), offset=1)
    assert {r.type: r for r in recs}["title"].properties["name"] == "Dark (Director's cut)"
    assert metrics.value("rdg_records_in_total", topic="member.playback") == 2


def test_pipeline_dead_letters_bad_input_with_reason_and_coordinates() -> None:
    sdf, prod, metrics = make_sdf("member.playback")
    assert run(sdf, "member.playback", b"BAD bytes", offset=7) == []
    assert run(sdf, "member.playback", json.dumps(playback(title_id=None)).encode(), offset=8) == []
    assert [t for t in prod.topics()] == ["member.playback.dlq", "member.playback.dlq"]
    h0 = dict(prod.sent[0][3] or [])
    assert h0["rdg.dlq.reason"] == b"not_confluent_framing"
    assert (h0["rdg.source.topic"], h0["rdg.source.partition"], h0["rdg.source.offset"]) == (b"member.playback", b"0", b"7")
    assert prod.sent[0][1] == b"BAD bytes" and prod.sent[0][2] == b"a1"
    h1 = dict(prod.sent[1][3] or [])
    assert h1["rdg.dlq.reason"] == b"missing_field" and h1["rdg.source.offset"] == b"8"
    assert metrics.value("rdg_dlq_records_total", reason="missing_field") == 1
    # an unparseable event time is bad too, and the pipeline keeps going afterwards
    assert run(sdf, "member.playback", json.dumps(playback(event_time="yesterday")).encode(), offset=9) == []
    assert dict(prod.sent[2][3] or [])["rdg.dlq.reason"] == b"bad_event_time"
    assert len(run(sdf, "member.playback", json.dumps(playback()).encode(), offset=10)) == 7


def test_pipeline_login_optional_profile_and_projection() -> None:
    sdf, prod, _ = make_sdf("member.login")
    ev = {"event_id": "e", "event_time": T0, "account_id": "a1", "profile_id": None, "device_id": "d9",
          "device_type": "PHONE", "country": "NL", "app_version": "1.2", "plan": "basic", "noise": "x" * 100}
    recs = run(sdf, "member.login", json.dumps(ev).encode())
    assert sorted((r.kind, r.type) for r in recs) == [("edge", "logged_in_from"), ("node", "account"),
                                                     ("node", "device")]
    lif = next(r for r in recs if r.type == "logged_in_from")
    assert lif.properties == {"last_login_ts": T0, "device_type": "PHONE", "country": "NL", "app_version": "1.2"}
    assert prod.sent == []


def test_model_encoding_is_the_stored_encoding() -> None:
    """The LWW tie-break compares the exact text kv.codec stores for each value."""
    for v in [1, -3, 1.5, 1.5e20, 1e-7, True, "abc", "é ü 東京", ["a", "é"], {"b": 1, "a": [1, 2]}, 10**15]:
        assert encode_props({"p": v})["p"] == encode_value(v)
        assert json.loads(encode_value(v)) == v
    assert encode_value({"b": 1, "a": 2}) == '{"a":2,"b":1}'


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_emit_sink_quiet_stream_is_flushed_by_the_wall_clock_timer() -> None:
    clock, prod = FakeClock(), ListProducer()
    sink = GraphEmitSink(prod, AppMetrics("unit"), window_s=2, clock=clock, start_timer=False)
    for i in range(10):  # a burst of updates to one key, then the stream goes quiet
        sink.add(GraphRecord("edge", "plays", "p1", "g1", {"action": "HEARTBEAT"}, T0 + i), "a1", T0, [], "member.gaming", 0, i)
    sink.add(GraphRecord("edge", "plays", "p1", "g1", {"action": "START"}, T0), "a1", T0, [], "member.gaming", 0, 10)
    assert len(prod.sent) == 1  # the leading edge, at once; the rest folds (the older START loses)
    assert sink.tick() == 0
    clock.t += 2.0  # no new events: only the clock moves
    assert sink.tick() == 1
    topic, value, key, _ = prod.sent[1]
    assert topic == "graph.edge.plays" and key == b"p1"
    assert json.loads(value or b"") == {"kind": "edge", "type": "plays", "src": "p1", "dst": "g1",
                                        "properties": {"action": "HEARTBEAT"}, "updated_at": T0 + 9}
    assert sink.metrics.value("rdg_dedup_suppressed_total") == 9  # 11 updates -> 2 records
    clock.t += 2.0
    assert sink.tick() == 0 and len(sink.buffer) == 0  # a quiet window releases the key


def test_emit_sink_flush_emits_pending_changes_before_commit_and_refuses_unacked() -> None:
    clock, prod = FakeClock(), ListProducer()
    sink = GraphEmitSink(prod, AppMetrics("unit"), window_s=10, clock=clock, start_timer=False)
    sink.add(GraphRecord("node", "device", "d1", None, {"device_type": "TV"}, T0), "a1", T0, [], "member.login", 0, 0)
    sink.add(GraphRecord("node", "device", "d1", None, {"device_type": "WEB"}, T0 + 1), "a1", T0, [], "member.login", 0, 1)
    assert len(prod.sent) == 1
    sink.flush()  # the checkpoint is about to commit offset 1: its change must be in Kafka first
    assert sink.buffer.pending() == 0 and prod.topics() == ["graph.node.device"] * 2
    assert json.loads(prod.sent[1][1] or b"")["properties"] == {"device_type": "WEB"}
    sink.add(GraphRecord("node", "device", "d2", None, {}, T0), "a1", T0, [], "member.login", 0, 2)
    prod.pending = 1
    with pytest.raises(RuntimeError, match="not acknowledged"):
        sink.flush()


class FlakyStore:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.written: list[GraphRecord] = []
        self.calls = 0

    def ping(self) -> None:
        return None

    def write(self, records: Sequence[GraphRecord]) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("NoHostAvailable")
        self.written.extend(records)


def batch_of(n: int) -> SinkBatch:
    b = SinkBatch("graph.node.device", 0)
    for i in range(n):
        b.append(GraphRecord("node", "device", f"d{i}", None, {}, T0), f"d{i}", T0, [], i)
    return b


def test_cassandra_sink_chunks_and_retries() -> None:
    store = FlakyStore(failures=2)
    sink = CassandraSink(store, AppMetrics("unit"), chunk_size=4, max_retries=3, sleep=lambda s: None)
    sink.write(batch_of(10))
    assert len(store.written) == 10 and store.calls == 2 + 3
    assert sink.metrics.value("rdg_cassandra_writes_total", type="device") == 10
    assert sink.metrics.value("rdg_cassandra_errors_total") == 2


class FencingStore(FlakyStore):
    """A writer whose erasure fence drops every record of device d0 (returns what it wrote)."""

    def write(self, records: Sequence[GraphRecord]) -> Sequence[GraphRecord]:  # type: ignore[override]
        kept = [r for r in records if r.id != "d0"]
        self.written.extend(kept)
        return kept


def test_cassandra_sink_counts_only_the_records_written() -> None:
    store = FencingStore(failures=0)
    sink = CassandraSink(store, AppMetrics("unit"), chunk_size=4, sleep=lambda s: None)
    sink.write(batch_of(10))
    assert len(store.written) == 9
    assert sink.metrics.value("rdg_cassandra_writes_total", type="device") == 9


def test_cassandra_sink_backpressure_after_bounded_retries() -> None:
    store = FlakyStore(failures=100)
    sink = CassandraSink(store, AppMetrics("unit"), max_retries=2, backpressure_retry_s=7, sleep=lambda s: None)
    with pytest.raises(SinkBackpressureError) as ei:
        sink.write(batch_of(3))
    assert ei.value.retry_after == 7 and store.calls == 3 and store.written == []


def test_sink_pipeline_parses_and_dead_letters() -> None:
    app = Application(broker_address="127.0.0.1:1", consumer_group="unit", loglevel="CRITICAL")
    sdf = app.dataframe(Topic("graph.node.device", value_deserializer="bytes", key_deserializer="str"))
    bad: list[tuple[str, str]] = []
    steps = SinkSteps(AppMetrics("unit"), lambda t, r, d, raw, k: bad.append((t, r)), {("node", "device")})
    sdf = build_sink_pipeline(sdf, steps, None)
    ctx = MessageContext(topic="graph.node.device", partition=0, offset=0, size=0)
    good = GraphRecord("node", "device", "d1", None, {"device_type": "TV"}, T0)
    out = sdf.test(json.dumps(good.to_dict()).encode(), key="d1", ctx=ctx)
    assert [o[0] for o in out] == [good]
    assert sdf.test(b"{not json", key="x", ctx=ctx) == []
    wrong = GraphRecord("node", "title", "t1", None, {}, T0)
    assert sdf.test(json.dumps(wrong.to_dict()).encode(), key="t1", ctx=ctx) == []
    assert bad == [("graph.node.device", "bad_json"), ("graph.node.device", "unknown_type")]


def test_rate_meter_reports_the_real_rate_on_the_first_read_and_decays_to_zero() -> None:
    """``rdg apps status`` scrapes an app once: the rate must not depend on earlier reads."""
    clock = FakeClock()
    meter = RateMeter(window_s=10, clock=clock)
    for _ in range(50):  # 5 s at 100 events/s
        meter.add(10)
        clock.t += 0.1
    assert 45 <= meter.rate() <= 60  # 500 events over the (9-10 s) window
    clock.t += 30  # quiet
    assert meter.rate() == 0.0
    meter.add(3)
    assert meter.rate() > 0


def test_sink_reports_its_input_rate() -> None:
    """Sink apps count their input in the rate metric that ``rdg apps status`` shows as IN/S."""
    app = Application(broker_address="127.0.0.1:1", consumer_group="unit", loglevel="CRITICAL")
    sdf = app.dataframe(Topic("graph.node.device", value_deserializer="bytes", key_deserializer="str"))
    metrics = AppMetrics("unit-sink")
    sdf = build_sink_pipeline(sdf, SinkSteps(metrics, lambda t, r, d, raw, k: None, {("node", "device")}), None)
    ctx = MessageContext(topic="graph.node.device", partition=0, offset=0, size=0)
    rec = GraphRecord("node", "device", "d1", None, {"device_type": "TV"}, T0)
    for _ in range(20):
        sdf.test(json.dumps(rec.to_dict()).encode(), key="d1", ctx=ctx)
    assert metrics.value("rdg_input_rate") > 0  # first and only read
    assert metrics.value("rdg_records_in_total", topic="graph.node.device") == 20


def test_processor_rows_through_the_emit_sink_equal_the_mapped_records() -> None:
    """The app path (rows_step -> GraphEmitSink, no GraphRecord per row) emits exactly what the
    test path's records give through the same dedup window."""
    table = CatalogTable(NO_KAFKA, ["catalog.titles"], json_decode)
    table.put("catalog.titles", "t1", {"title_id": "t1", "name": "Dark", "kind": "SHOW", "genres": ["scifi"]})
    events = [json.dumps(playback(event_time=T0 + i, position_ms=i * 1000, event_id=f"e{i}",
                                  action="STOP" if i == 9 else "HEARTBEAT")).encode() for i in range(10)]
    sdf, _, _ = make_sdf("member.playback", table)
    want = DedupBuffer(window_s=10)
    expected_recs: list[GraphRecord] = []
    for i, ev in enumerate(events):
        for r in run(sdf, "member.playback", ev, offset=i):
            expected_recs += want.add(r, 0)
    expected_recs += want.drain()
    expected = sorted(json.dumps(r.to_dict(), sort_keys=True) for r in expected_recs)

    app = Application(broker_address="127.0.0.1:1", consumer_group="unit", loglevel="CRITICAL")
    metrics, prod = AppMetrics("unit"), ListProducer()
    sink = GraphEmitSink(prod, metrics, window_s=10, clock=FakeClock(), start_timer=False)
    app_sdf = build_pipeline(app.dataframe(Topic("member.playback", value_deserializer="bytes", key_deserializer="str")),
                             SPEC, "member.playback", decode=json_decode, lookup=table.get,
                             dead_letters=DeadLetters(prod, "unit", metrics), metrics=metrics, sink=sink,
                             clock_ms=lambda: NOW_MS)
    for i, ev in enumerate(events):
        ctx = MessageContext(topic="member.playback", partition=0, offset=i, size=len(ev))
        app_sdf.test(ev, key="a1", timestamp=T0, ctx=ctx)
    assert len(prod.sent) == 7 and len(sink.buffer) == 7  # one leading edge per key, the rest folded
    sink.flush()
    assert sorted(json.dumps(json.loads(v or b""), sort_keys=True) for _, v, _, _ in prod.sent) == expected
    assert metrics.value("rdg_records_mapped_total") == 70 and metrics.value("rdg_records_out_total") == 14
    assert metrics.value("rdg_dedup_suppressed_total") == 56


def test_registry_apps_and_sink_groups() -> None:
    streaming = StreamingSettings(group_prefix="unit", metrics_base_port=20100)
    apps = app_specs(SPEC, streaming)
    procs = [a for a in apps if a.kind == "processor"]
    assert sorted(a.source_topic or "" for a in procs) == sorted(SPEC.mappings)
    assert len({a.consumer_group for a in apps}) == len(apps)
    assert all(a.consumer_group == f"unit-{a.name}" for a in apps)
    assert [a.metrics_port for a in apps] == list(range(20100, 20100 + len(apps)))
    # the replica cap is what the topology gives each input topic (the largest, for a sink)
    for a in apps:
        assert a.partitions == max(partitions_of(SPEC, t) for t in a.input_topics)
        assert a.command == ("python", "-m", "rdg_platform.streaming", "run", a.name)
    assert get_app(apps, procs[0].name) == procs[0]
    with pytest.raises(KeyError, match="unknown app"):
        get_app(apps, "nope")
    groups = resolve_sink_groups(SPEC, DEFAULT_SINK_GROUPS)
    every = [n for ns in groups.values() for n in ns]
    assert sorted(every) == sorted(SPEC.namespaces)  # each namespace in exactly one group
    assert groups["edges-member"] == ["edge.has_profile", "edge.logged_in_from", "edge.streamed_from"]
    with pytest.raises(ValueError, match="unwritten"):
        resolve_sink_groups(SPEC, {"nodes": ["node.*"]})
    with pytest.raises(ValueError, match="not a namespace"):
        resolve_sink_groups(SPEC, {"x": ["edge.nope", "node.*", "edge.*"]})


def test_application_connects_as_the_kafka_settings_say(tmp_path: Any) -> None:
    """The apps take bootstrap and security from the settings (RDG_KAFKA_*), nothing from a default."""
    s = load_settings({"RDG_KAFKA_BOOTSTRAP": "kafka-a.example:9093,kafka-b.example:9093",
                       "RDG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RDG_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                       "RDG_KAFKA_SASL_USERNAME": "rdg-app", "RDG_KAFKA_SASL_PASSWORD": "s3cret",
                       "RDG_KAFKA_SSL_CA": "/etc/rdg/ca.pem", "RDG_STATE_DIR": str(tmp_path),
                       "RDG_STREAMING_GROUP_PREFIX": "blue", "RDG_STREAMING_OFFSET_RESET": "latest",
                       "RDG_STREAMING_DEDUP_WINDOW_S": "4", "RDG_STREAMING_SINK_COMMIT_S": "0.5"})
    apps = app_specs(SPEC, s.streaming)
    proc = next(a for a in apps if a.kind == "processor")
    sink = next(a for a in apps if a.kind == "sink")
    papp = make_application(s, proc, on_message_processed=lambda t, p, o: None)
    conn = papp.config.broker_address
    assert conn.bootstrap_servers == "kafka-a.example:9093,kafka-b.example:9093"
    assert conn.security_protocol == "sasl_ssl" and conn.sasl_mechanism == "SCRAM-SHA-512"
    assert conn.sasl_username == "rdg-app" and conn.sasl_password is not None
    assert conn.sasl_password.get_secret_value() == "s3cret" and conn.ssl_ca_location == "/etc/rdg/ca.pem"
    assert papp.config.consumer_group == f"blue-{proc.name}" and papp.config.auto_offset_reset == "latest"
    assert papp.config.commit_interval == 16.0  # the largest dedup window: 4 × the 4 s window
    sapp = make_application(s, sink, on_message_processed=lambda t, p, o: None)
    assert sapp.config.commit_interval == 0.5 and sapp.config.consumer_poll_timeout == 0.1


def test_dedup_max_window_setting() -> None:
    """The largest dedup window defaults to 4 × the window, drives the processor's checkpoint
    interval unless that is set, and may not be below the window."""
    s = load_settings({"RDG_STREAMING_DEDUP_WINDOW_S": "60"}).streaming
    assert (s.dedup_window_cap_s, s.processor_commit_interval_s) == (240.0, 240.0)
    s = load_settings({"RDG_STREAMING_DEDUP_WINDOW_S": "60", "RDG_STREAMING_DEDUP_MAX_WINDOW_S": "60",
                       "RDG_STREAMING_PROCESSOR_COMMIT_S": "30"}).streaming
    assert (s.dedup_window_cap_s, s.processor_commit_interval_s) == (60.0, 30.0)
    with pytest.raises(Exception, match="DEDUP_MAX_WINDOW_S"):
        load_settings({"RDG_STREAMING_DEDUP_WINDOW_S": "60", "RDG_STREAMING_DEDUP_MAX_WINDOW_S": "30"})
