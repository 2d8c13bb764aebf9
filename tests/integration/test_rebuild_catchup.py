"""A Spark rebuild under live traffic equals, at the switch, what the streaming apps wrote.

Set-up, as in production: the real streaming apps (processors and sinks under the supervisor,
:func:`tests.support.streaming.local_pipeline`) consume the source topics and write the live
namespace; the generator produces; hours are archived by the real archive writer; then the rebuild
runs while the generator keeps sending. The rebuild reads the archive, replays Kafka from the offsets
the last archived hour recorded, validates against the live namespace and switches. The oracle is the
live namespace the apps wrote (checksums of cells and write times over the run's keys), never the
mapping called by the test.

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from rdg_platform.avro import AvroSerde
from rdg_platform.generator import GeneratorConfig, ProduceSummary, make_producer, produce_generated
from rdg_platform.kafka_client import security_config
from rdg_platform.kv import versions
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.lakehouse.archive import archive_window
from rdg_platform.lakehouse.backfill import build_lookup
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.lakehouse.spark import (
    CatchUp,
    SparkConfig,
    build_spark_session,
    ensure_spark_jars,
    range_checksums,
    rebuild_namespace,
)
from rdg_platform.model.spec import default_spec_path
from rdg_platform.settings import Settings
from tests.support.streaming import LocalPipeline, local_pipeline

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
PREFIX = f"rb{RUN}-"
NAMESPACE = "node.account"
HOUR_MS = 3_600_000
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


def test_rebuild_under_live_traffic_equals_live_at_the_switch(pipeline: LocalPipeline, cfg: Settings,
                                                              topics: tuple[Path, dict[str, str]],
                                                              tmp_path: Path) -> None:
    names = topics[1]
    spec = pipeline.spec
    now_ms = int(time.time() * 1000)
    hour = now_ms // HOUR_MS * HOUR_MS
    # History: activity two hours ago (Kafka timestamps = event times), archived hour by hour.
    past = GeneratorConfig(members=30, seed=1, start_ms=hour - 2 * HOUR_MS + 60_000, duration_s=900.0,
                           titles=20, games=5, id_prefix=PREFIX, max_events=1500)
    s1 = _produce(pipeline, names, past, rate=0.0)
    assert s1.failed == 0 and s1.total > 0
    catalog_cfg = CatalogConfig.local(tmp_path / "iceberg")
    catalog = catalog_cfg.load()
    with AvroSerde.from_settings(pipeline.settings.registry) as serde:
        for start in (hour - 3 * HOUR_MS, hour - 2 * HOUR_MS, hour - HOUR_MS):
            for topic in names.values():
                archive_window(catalog, topic, spec.sources[topic].schema, serde,
                               pipeline.settings.kafka.bootstrap_servers, start, start + HOUR_MS, timeout_s=60,
                               consumer_config=security_config(pipeline.settings.kafka))

    # Live traffic from now on, while the rebuild runs (the same members: their nodes change).
    spark = build_spark_session(SparkConfig(master="local[2]", shuffle_partitions=2), catalog_cfg,
                                ensure_spark_jars(cfg.cache_dir / "jars" / "spark"))
    # Simulated time runs at most 240 s ahead of the wall clock, inside the allowed clock skew (300 s),
    # so the stream accepts every event; at 20 events/s it keeps sending through the rebuild.
    live = GeneratorConfig(members=30, seed=2, start_ms=int(time.time() * 1000), duration_s=240.0,
                           titles=20, games=5, id_prefix=PREFIX, max_events=1500, include_catalog=False)
    sent: dict[str, Any] = {}

    def send() -> None:
        sent["summary"] = _produce(pipeline, names, live, rate=20.0)
        sent["done_at"] = time.time()

    gen = threading.Thread(target=send, name="generator", daemon=True)
    gen.start()
    try:
        lookup = build_lookup(catalog, spec)
        time.sleep(2.0)
        rebuild_started = time.time()
        res = rebuild_namespace(
            spark, catalog_cfg, spec, NAMESPACE, lookup, cassandra=pipeline.settings.cassandra,
            catchup=CatchUp(pipeline.settings.kafka, pipeline.settings.registry, key_range=KEY_RANGE,
                            validate_timeout_s=420.0, settle_s=(pipeline.settings.cassandra.namespace_refresh_s
                                                                or 0.0) + 2.0))
    finally:
        spark.stop()
    gen.join(120)
    assert "summary" in sent, "the generator did not finish"
    # The generator was still sending after the rebuild began, and what it sent after the archive
    # reached the new version through the catch-up.
    assert sent["done_at"] > rebuild_started
    assert sent["summary"].failed == 0
    assert res.switched and res.catchup_records >= sent["summary"].total > 0
    assert res.live_checksums["forward"][0] > 0

    # At the switch: the new version (now active) equals the version the streaming apps wrote.
    store = GraphStore.from_spec(spec, pipeline.settings.cassandra)
    try:
        ns = spec.namespaces[NAMESPACE]
        session = store.kv.cluster_session(ns.cluster)
        active = versions.active_namespace(session, ns)
        assert active.table == f"{ns.table}_v{res.version}"
        old = versions.versioned(ns, res.version - 1) if res.version > 1 else ns
        assert range_checksums(session, active, KEY_RANGE) == range_checksums(session, old, KEY_RANGE) \
            == res.live_checksums
        # Every member of the run is in it.
        accounts = store.get_nodes("account", [f"{PREFIX}a{i:07d}" for i in range(30)])
        assert len(accounts) == 30
    finally:
        store.close()
    print(f"rebuild: {res.keys} keys from the archive, {res.catchup_records} Kafka records caught up in "
          f"{res.catchup_rounds} rounds, {res.settle_records} after the switch; timings "
          f"{ {k: round(v, 1) for k, v in res.timings.items()} }; started {datetime.now(tz=UTC).isoformat()}")
