"""A Spark rebuild under continuous live traffic equals, at the switch, what the streaming apps wrote.

Set-up, as in production: the real streaming apps (processors and sinks under the supervisor,
:func:`tests.support.streaming.local_pipeline`) consume the source topics and write the live
namespace; history is produced and archived by the real archive writer; then a generator sends live
events paced by the wall clock (each event sent when the clock reaches its event time) from before
the rebuild starts until after it has returned. The rebuild reads the archive, replays Kafka from
the offsets the last archived hour recorded, validates against the live namespace row by row at a
cut (rows no write after it touched) and switches, all while the events keep coming.

The oracle is the live version the streaming apps wrote (never the mapping called by the test),
read afterwards by the test's own scan: every row whose newest write time is at or before the cut
the rebuild used, in the old version and in the new one, must be identical (values and write
times), and those rows must be most of the run's rows, including rows the live traffic changed.

Isolation on the shared services: the run's source topics are private (the spec is the packaged one
with the source topics renamed, so apps, generator, archive and rebuild all use them), the keyspace is
private, and ids carry a unique prefix; the comparison covers the record ids with that prefix (the
graph topics between processors and sinks are shared with other runs).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cassandra.cluster import Session

from rdg_platform.avro import AvroSerde
from rdg_platform.generator import GeneratorConfig, ProduceSummary, make_producer, produce_generated
from rdg_platform.generator.journeys import generate_events
from rdg_platform.generator.render import EventEncoder
from rdg_platform.kafka_client import security_config
from rdg_platform.kv import versions
from rdg_platform.kv.codec import merge_props
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.lakehouse.archive import archive_window
from rdg_platform.lakehouse.backfill import build_lookup
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.lakehouse.spark import (
    CatchUp,
    SparkConfig,
    build_spark_session,
    ensure_spark_jars,
    rebuild_namespace,
)
from rdg_platform.model.spec import Namespace, default_spec_path
from rdg_platform.settings import Settings
from tests.support.streaming import LocalPipeline, local_pipeline

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
PREFIX = f"rb{RUN}-"
NAMESPACE = "node.account"
HOUR_MS = 3_600_000
MEMBERS = 60
WARM_LIVE_S = 60.0  # live traffic before the rebuild starts
KEY_RANGE = (PREFIX, PREFIX + "\U0010ffff")


def _private_spec(path: Path) -> dict[str, str]:
    """The packaged spec with every source topic renamed to a private one; returns old -> new."""
    doc = yaml.safe_load(default_spec_path().read_text())
    names = {t: f"rdgtest{RUN}.{t}" for t in doc["sources"]}
    doc["sources"] = {names[t]: v for t, v in doc["sources"].items()}
    mappings = {}
    for t, m in doc["mappings"].items():
        for e in (m.get("enrich") or {}).values():
            e["topic"] = names[e["topic"]]
        mappings[names[t]] = m
    doc["mappings"] = mappings
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return names


@pytest.fixture(scope="module")
def topics(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("rebuild-spec")
    path = d / "spec.yaml"
    return path, _private_spec(path)


@pytest.fixture(scope="module")
def pipeline(services: object, cfg: Settings, topics: tuple[Path, dict[str, str]]) -> Iterator[LocalPipeline]:
    with local_pipeline(cfg, name="rebuild", extra={"RDG_SPEC": str(topics[0])}) as pipe:
        yield pipe


def _produce(pipe: LocalPipeline, names: dict[str, str], gcfg: GeneratorConfig, rate: float) -> ProduceSummary:
    with AvroSerde.from_settings(pipe.settings.registry) as serde:
        serde.register_all(pipe.spec)
        producer, tracker = make_producer(pipe.settings.kafka)
        return produce_generated(gcfg, producer, tracker, serde, rate=rate, topic_map=names, worker=False)


class PacedGenerator(threading.Thread):
    """Sends the generator's member events when the wall clock reaches their event time (so event
    times are never ahead of the clock: the stream accepts every one), until :attr:`stop` is set.

    The simulated activity starts ``warm_s`` before now and the events before now are skipped, so
    members are past the generator's opening story chain (sessions 5-60 s apart) and in their
    steady state: short sessions and long idle gaps, as most of a real member base is at any moment.
    """

    def __init__(self, pipe: LocalPipeline, names: dict[str, str], warm_s: float = 600.0) -> None:
        super().__init__(name="paced-generator", daemon=True)
        self.pipe, self.names = pipe, names
        self.started_ms = int(time.time() * 1000)
        self.cfg = GeneratorConfig(members=MEMBERS, seed=2, start_ms=self.started_ms - int(warm_s * 1000),
                                   duration_s=warm_s + 3600.0, titles=20, games=5, id_prefix=PREFIX,
                                   include_catalog=False, mean_gap_s=400.0, mean_watch_s=40.0, mean_game_s=40.0)
        self.stop = threading.Event()
        self.sent_at: list[float] = []  # wall-clock time of each send
        self.failed = -1
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with AvroSerde.from_settings(self.pipe.settings.registry) as serde:
                serde.register_all(self.pipe.spec)
                producer, tracker = make_producer(self.pipe.settings.kafka)
                enc = EventEncoder(serde)
                for ev in generate_events(self.cfg):
                    if ev.timestamp_ms < self.started_ms:
                        continue
                    while not self.stop.is_set() and (wait := ev.timestamp_ms / 1000 - time.time()) > 0:
                        producer.poll(0)
                        self.stop.wait(min(wait, 0.2))
                    if self.stop.is_set():
                        break
                    producer.produce(self.names[ev.topic], enc.value(ev), ev.key.encode(), timestamp=ev.timestamp_ms)
                    producer.poll(0)
                    self.sent_at.append(time.time())
                self.failed = tracker.failed + producer.flush(60)
        except BaseException as exc:  # noqa: BLE001 (reported by the test thread)
            self.error = exc

    def sent_after(self, t: float) -> int:
        return sum(1 for s in self.sent_at if s > t)


@dataclass(frozen=True)
class Row:
    """One stored row as the test reads it: ``updated_at`` with its write time and every property's
    value with its write time (a map entry wins over the blob, as the store documents)."""

    updated_at: Any
    updated_at_wt: int
    cells: tuple[tuple[str, Any, int], ...]

    @property
    def newest_wt(self) -> int:
        return max([self.updated_at_wt, *(wt for _k, _v, wt in self.cells)])


def read_rows(session: Session, ns: Namespace) -> dict[tuple[str, str], Row]:
    """Every row of ``ns``'s table whose record id carries the run's prefix (the test's own scan)."""
    out = {}
    cols = "record_id, item_key, updated_at, writetime(updated_at), props, writetime(props), pb, writetime(pb)"
    q = f"SELECT {cols} FROM {ns.keyspace}.{ns.table}"  # noqa: S608 (names from the spec)
    for r in session.execute(q):
        if not r[0].startswith(PREFIX):
            continue
        raw_map, map_wt, blob, blob_wt = r[4] or {}, r[5], r[6], r[7]
        keys = sorted(raw_map)
        wts = dict(zip(keys, map_wt, strict=True)) if isinstance(map_wt, list | tuple) else dict.fromkeys(keys, map_wt)
        values = merge_props(raw_map, blob)
        cells = tuple(sorted((k, v, int(wts[k] if k in wts else blob_wt)) for k, v in values.items()))
        out[(r[0], r[1])] = Row(r[2], int(r[3]), cells)
    return out


@pytest.fixture(scope="module")
def archived(pipeline: LocalPipeline, topics: tuple[Path, dict[str, str]],
             tmp_path_factory: pytest.TempPathFactory) -> CatalogConfig:
    """History: activity two hours ago (Kafka timestamps = event times) through the streaming apps,
    archived hour by hour by the real archive writer into a private catalog."""
    names, spec = topics[1], pipeline.spec
    hour = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    past = GeneratorConfig(members=MEMBERS, seed=1, start_ms=hour - 2 * HOUR_MS + 60_000, duration_s=900.0,
                           titles=20, games=5, id_prefix=PREFIX, max_events=3000)
    s1 = _produce(pipeline, names, past, rate=0.0)
    assert s1.failed == 0 and s1.total > 0
    catalog_cfg = CatalogConfig.local(tmp_path_factory.mktemp("rebuild-iceberg"))
    catalog = catalog_cfg.load()
    with AvroSerde.from_settings(pipeline.settings.registry) as serde:
        for start in (hour - 3 * HOUR_MS, hour - 2 * HOUR_MS, hour - HOUR_MS):
            for topic in names.values():
                archive_window(catalog, topic, spec.sources[topic].schema, serde,
                               pipeline.settings.kafka.bootstrap_servers, start, start + HOUR_MS, timeout_s=60,
                               consumer_config=security_config(pipeline.settings.kafka))
    return catalog_cfg


def _live_lag_s(pipe: LocalPipeline) -> float:
    """How far the live version may lag the topics: the processors' largest dedup window (a folded
    change is emitted when its window closes), the sinks' commit interval, and room for a loaded
    machine (Spark and the apps share two cores)."""
    st = pipe.settings.streaming
    return st.dedup_window_cap_s + st.sink_commit_s + 15.0


def test_rebuild_under_continuous_traffic_equals_live_at_the_switch(
        pipeline: LocalPipeline, cfg: Settings, topics: tuple[Path, dict[str, str]],
        archived: CatalogConfig) -> None:
    names = topics[1]
    spec = pipeline.spec
    catalog_cfg = archived
    catalog = catalog_cfg.load()
    live_lag_s = _live_lag_s(pipeline)
    gen = PacedGenerator(pipeline, names)
    gen.start()
    logs: list[tuple[float, str]] = []
    try:
        spark = build_spark_session(SparkConfig(master="local[2]", shuffle_partitions=2), catalog_cfg,
                                    ensure_spark_jars(cfg.cache_dir / "jars" / "spark"))
        try:
            lookup = build_lookup(catalog, spec)
            # Live traffic for a while first, so that rows it wrote are older than the cut too.
            time.sleep(max(0.0, gen.started_ms / 1000 + WARM_LIVE_S - time.time()))
            rebuild_started = time.time()
            res = rebuild_namespace(
                spark, catalog_cfg, spec, NAMESPACE, lookup, cassandra=pipeline.settings.cassandra,
                catchup=CatchUp(pipeline.settings.kafka, pipeline.settings.registry, key_range=KEY_RANGE,
                                validate_timeout_s=420.0, live_lag_s=live_lag_s,
                                settle_s=(pipeline.settings.cassandra.namespace_refresh_s or 0.0) + 2.0),
                log=lambda m: logs.append((time.time(), m)))
            returned = time.time()
        finally:
            spark.stop()
        # The generator goes on after the rebuild has returned (and so after the switch).
        deadline = time.time() + 60
        while gen.sent_after(returned) < 3 and time.time() < deadline and gen.is_alive():
            time.sleep(0.5)
    finally:
        gen.stop.set()
        gen.join(90)
    assert gen.error is None, gen.error
    assert gen.failed == 0
    switched_at = next(t for t, m in logs if "switched from" in m)
    sent_before = len(gen.sent_at) - gen.sent_after(rebuild_started)
    assert sent_before > 0, "the generator was not sending when the rebuild started"
    assert gen.sent_after(switched_at) > 0 and gen.sent_after(returned) >= 3, \
        "the generator did not keep sending through the switch"
    # Sent during the rebuild at least every few seconds: a stream, not a burst that stopped.
    during = [t for t in gen.sent_at if rebuild_started <= t <= returned]
    gaps = [b - a for a, b in zip([rebuild_started, *during], [*during, returned], strict=True)]
    assert max(gaps) < 30.0, f"the generator paused {max(gaps):.0f} s during the rebuild"

    assert res.switched
    settled = res.settled_rows["forward"]
    assert settled > 0 and res.live_checksums["forward"][0] == settled
    assert res.validation_cut_us > 0

    # The test's own check, afterwards: the old version is what the streaming apps wrote (the sinks
    # have moved to the new version since the switch), the new one what the rebuild wrote (and, since
    # the switch, the sinks too). Rows no write after the cut touched in either must be identical.
    store = GraphStore.from_spec(spec, pipeline.settings.cassandra)
    try:
        ns = spec.namespaces[NAMESPACE]
        session = store.kv.cluster_session(ns.cluster)
        active = versions.active_namespace(session, ns)
        assert active.table == f"{ns.table}_v{res.version}"
        old = versions.versioned(ns, res.version - 1) if res.version > 1 else ns
        live_rows, new_rows = read_rows(session, old), read_rows(session, active)
        cut = res.validation_cut_us
        compared = differing = 0
        examples = []
        touched_live = 0  # compared rows the live traffic had written (after the archive)
        for key in live_rows.keys() | new_rows.keys():
            a, b = live_rows.get(key), new_rows.get(key)
            if max(a.newest_wt if a else 0, b.newest_wt if b else 0) > cut:
                continue
            compared += 1
            if a != b:
                differing += 1
                examples.append((key, a, b))
            elif a is not None and a.newest_wt >= gen.started_ms * 1000:
                touched_live += 1
        rows = len(live_rows.keys() | new_rows.keys())
        assert differing == 0, f"{differing} of {compared} rows settled at the cut differ, e.g. {examples[:3]}"
        assert rows >= MEMBERS and compared > rows / 2, f"only {compared} of {rows} rows settled at the cut"
        assert touched_live >= 3, f"only {touched_live} compared rows carry a write of the live traffic"
        # Every member is in the new version.
        assert len(store.get_nodes("account", [f"{PREFIX}a{i:07d}" for i in range(MEMBERS)])) == MEMBERS
    finally:
        store.close()
    print(f"rebuild: {res.keys} keys from the archive, {res.catchup_records} Kafka records caught up in "
          f"{res.catchup_rounds} rounds ({res.validation_rounds} validation rounds, {res.mismatch_rounds} with "
          f"settled rows differing), {res.settle_records} after the switch; at the switch {res.settled_rows} "
          f"settled, {res.in_flight_rows} in flight (cut {cut // 1000} ms, live lag {live_lag_s:.1f} s); "
          f"afterwards {compared} of {rows} rows compared equal ({touched_live} written by live traffic); "
          f"generator sent {len(gen.sent_at)} ({gen.sent_after(switched_at)} after the switch); rebuild "
          f"{returned - rebuild_started:.0f} s; timings { {k: round(v, 1) for k, v in res.timings.items()} }")


def test_rebuild_fails_on_a_settled_row_the_paths_disagree_on(
        pipeline: LocalPipeline, cfg: Settings, archived: CatalogConfig) -> None:
    """A row only the live version has, written an hour ago (settled, and unchanged round after
    round), is a real disagreement: the rebuild fails naming it and does not switch."""
    spec = pipeline.spec
    ns = spec.namespaces[NAMESPACE]
    store = GraphStore.from_spec(spec, pipeline.settings.cassandra)
    try:
        session = store.kv.cluster_session(ns.cluster)
        before = versions.active_version(session, ns).version
        live = versions.active_namespace(session, ns)
        bogus = f"{PREFIX}bogus"
        ts_ms = int(time.time() * 1000) - HOUR_MS
        session.execute(session.prepare(f"UPDATE {ns.keyspace}.{live.table} USING TIMESTAMP ? "  # noqa: S608
                                        "SET updated_at = ? WHERE record_id = ? AND item_key = ''"),
                        (ts_ms * 1000, ts_ms, bogus))
        spark = build_spark_session(SparkConfig(master="local[2]", shuffle_partitions=2), archived,
                                    ensure_spark_jars(cfg.cache_dir / "jars" / "spark"))
        try:
            with pytest.raises(RuntimeError, match="validation failed") as err:
                rebuild_namespace(
                    spark, archived, spec, NAMESPACE, build_lookup(archived.load(), spec),
                    cassandra=pipeline.settings.cassandra,
                    catchup=CatchUp(pipeline.settings.kafka, pipeline.settings.registry, key_range=KEY_RANGE,
                                    validate_timeout_s=10.0, poll_s=1.0, live_lag_s=_live_lag_s(pipeline)))
        finally:
            spark.stop()
        msg = str(err.value)
        assert "same contents on both sides in two consecutive rounds" in msg and f"forward:{bogus}/" in msg, msg
        assert versions.active_version(session, ns).version == before
    finally:
        store.close()
