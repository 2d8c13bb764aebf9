"""Lakehouse on the real Kafka, registry, Cassandra, Iceberg (SQLite catalog) and Spark.

Isolation on shared services: events are produced with Kafka timestamps in one random hour of
2020-2022 chosen per run (ids carry a unique prefix too), a private Iceberg catalog/warehouse per
session and unique keyspaces. Assets run in-process through ``dagster.materialize``.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from dagster import AssetKey, AssetsDefinition, HourlyPartitionsDefinition, materialize

from rdg_platform.assets import maintenance as maint_assets
from rdg_platform.assets import rebuild as rebuild_assets
from rdg_platform.assets.archive import archive_topics, build_archive_assets
from rdg_platform.assets.backfill import build_backfill_asset
from rdg_platform.kafka_client import client_config, security_config
from rdg_platform.kv import versions
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.lakehouse.archive import read_archive
from rdg_platform.lakehouse.maintenance import data_files_per_hour, referenced_files
from rdg_platform.model import GraphSpec
from rdg_platform.resources import (
    CassandraResource,
    IcebergCatalogResource,
    SparkResource,
    platform_resources,
)
from rdg_platform.settings import Settings
from rdg_platform.topology import archive_table, ensure_topics
from tests.support.kv import isolated_spec, unique_keyspace
from tests.support.lakehouse import SourceEvent, generate_events, postgres_server
from tests.support.oracle import updates

pytestmark = pytest.mark.integration

HOUR = datetime(2020, 1, 2, tzinfo=UTC) + timedelta(hours=random.Random(uuid.uuid4().int).randrange(26000))
HOUR_MS = int(HOUR.timestamp() * 1000)
PARTITION_KEY = HOUR.strftime("%Y-%m-%d-%H:00")
PREFIX = f"lk{uuid.uuid4().hex[:6]}"
ORDER = [("kafka_partition", "ascending"), ("kafka_offset", "ascending")]
GARBAGE_TOPIC = "member.playback"  # gets one undecodable record in the hour
# The test hours lie in 2020-2022, before any retention-based default start: partitions from 2020.
PARTITIONS = HourlyPartitionsDefinition(start_date="2020-01-01-00:00", timezone="UTC")


@pytest.fixture(scope="module")
def iceberg(tmp_path_factory: pytest.TempPathFactory) -> IcebergCatalogResource:
    d: Path = tmp_path_factory.mktemp("iceberg")
    return IcebergCatalogResource(uri=f"sqlite:///{d / 'catalog.db'}", warehouse=(d / "warehouse").as_uri(),
                                  snapshots_to_keep=1, snapshot_min_age_minutes=0,
                                  retention_days=365 * 50)


@pytest.fixture(scope="module")
def live_ks() -> str:
    return unique_keyspace("rdg_test_lk_live")


@pytest.fixture(scope="module")
def events() -> list[SourceEvent]:
    return generate_events(HOUR_MS, n_members=12, events_per_member=8, prefix=PREFIX)


@pytest.fixture(scope="module")
def archive_assets(cfg: Settings) -> list[AssetsDefinition]:
    return build_archive_assets(archive_topics(cfg.load_spec()), PARTITIONS)


@pytest.fixture(scope="module")
def produced(services: object, cfg: Settings, events: list[SourceEvent]) -> Counter[str]:
    """Produce the events (plus one garbage record) with explicit timestamps; returns counts per topic."""
    from rdg_platform.avro import AvroSerde

    spec = isolated_spec("unused", cfg)
    ensure_topics(cfg.kafka.bootstrap_servers, spec, overrides=cfg.topics_file, admin_conf=security_config(cfg.kafka))
    serde = AvroSerde.from_settings(cfg.registry)
    p = Producer(client_config(cfg.kafka, **{"linger.ms": 5}))
    counts: Counter[str] = Counter()
    for e in events:
        p.produce(e.topic, key=e.key.encode(), value=serde.encode(e.topic, e.value), timestamp=e.timestamp_ms)
        counts[e.topic] += 1
    p.produce(GARBAGE_TOPIC, key=b"garbage", value=b"\x07not-avro", timestamp=HOUR_MS + 17)
    assert p.flush(30) == 0
    return counts


def _cassandra(cfg: Settings, keyspace: str) -> CassandraResource:
    """The session's Cassandra resource (as definitions.py builds it) with namespaces in ``keyspace``."""
    return platform_resources(cfg.model_copy(update={
        "cassandra": cfg.cassandra.model_copy(update={"keyspace": keyspace})})).cassandra


def _resources(cfg: Settings, iceberg: IcebergCatalogResource, keyspace: str, **extra: Any) -> dict[str, Any]:
    """The resources definitions.py builds from the session's settings, with a private catalog and
    keyspace."""
    return {"kafka": platform_resources(cfg).kafka, "iceberg": iceberg, "cassandra": _cassandra(cfg, keyspace),
            **extra}


@pytest.fixture(scope="module")
def archived(produced: Counter[str], iceberg: IcebergCatalogResource, live_ks: str, cfg: Settings,
             archive_assets: list[AssetsDefinition]) -> dict[str, Any]:
    """Archive the hour twice; return the second run's materialization metadata per asset."""
    out: dict[str, Any] = {}
    for _ in range(2):
        res = materialize(archive_assets, partition_key=PARTITION_KEY, resources=_resources(cfg, iceberg, live_ks))
        assert res.success
        for mat in res.get_asset_materialization_events():
            m = mat.step_materialization_data.materialization
            out[m.asset_key.path[-1]] = {k: v.value for k, v in m.metadata.items()}
        checks = res.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks), [c.metadata for c in checks if not c.passed]
    return out


def test_archive_twice_no_duplicates_and_count_equals_kafka(archived: dict[str, Any], produced: Counter[str],
                                                            iceberg: IcebergCatalogResource) -> None:
    cat = iceberg.catalog()
    for topic, n in produced.items():
        meta = archived[archive_table(topic)]
        data = read_archive(cat, topic, HOUR_MS, HOUR_MS + 3_600_000)
        assert data.num_rows == n, topic
        keys = list(zip(data.column("kafka_partition").to_pylist(), data.column("kafka_offset").to_pylist(),
                        strict=True))
        assert len(set(keys)) == n, f"duplicates in {topic}"
        extra = 1 if topic == GARBAGE_TOPIC else 0
        assert meta["rows"] == n and meta["kafka_records_in_hour"] == n + extra
        assert meta["undecodable"] == extra
        assert meta["bytes_read"] > 0 and meta["bytes_written"] > 0
        assert sum(r["records"] for r in meta["offset_ranges"].values()) == n + extra
        ids = set(data.column("event_id" if topic.startswith("member") else data.column_names[6]).to_pylist())
        assert all(str(i).startswith(("e", PREFIX)) for i in ids)


def test_archive_schema_follows_avro(archived: dict[str, Any], iceberg: IcebergCatalogResource, cfg: Settings) -> None:
    spec = isolated_spec("unused", cfg)
    for topic, src in spec.sources.items():
        table = iceberg.catalog().load_table(f"archive.{archive_table(topic)}")
        cols = {f.name for f in table.schema().fields}
        assert set(src.field_names) <= cols
        assert [f.name for f in table.spec().fields] == ["kafka_ts_hour"]


def test_bulk_avro_decode_matches_decode_for_topic_and_evolves(services: object, cfg: Settings,
                                                               tmp_path: Path) -> None:
    """The archive's bulk decoder against the real registry: same rows and the same bad-record reasons
    as AvroSerde.decode_for_topic record by record, and a newer writer schema evolves the table."""
    import struct

    from rdg_platform.avro import AvroSerde, DecodeError
    from rdg_platform.avro.bulk import AvroTopicDecoder
    from rdg_platform.lakehouse.archive import archive_records
    from rdg_platform.lakehouse.catalog import CatalogConfig
    from rdg_platform.lakehouse.kafka_window import WindowRecord

    spec = isolated_spec("unused", cfg)
    topic = f"lk-bulk-{uuid.uuid4().hex[:8]}"
    v1 = dict(spec.sources["member.login"].schema)
    v2 = {**v1, "fields": [*v1["fields"], {"name": "ab_cell", "type": ["null", "string"], "default": None}]}
    evs = [e.value for e in generate_events(HOUR_MS, 12, 6, prefix=PREFIX) if e.topic == "member.login"]
    with AvroSerde.from_settings(cfg.registry, schemas={topic: v1}) as s1, \
            AvroSerde.from_settings(cfg.registry, schemas={topic: v2}) as s2:
        good = [s1.encode(topic, e) for e in evs] + [s2.encode(topic, {**e, "ab_cell": "B"}) for e in evs[:5]]
        other_id = s1.schema_id("member.playback")  # registered, but not under this topic's subject
        values = good + [good[0][:-3], good[1] + b"\x00", b"\x01" + good[2][1:], b"\x00\x00",
                         struct.pack(">bI", 0, 2**31 - 7) + good[3][5:], struct.pack(">bI", 0, other_id) + good[3][5:]]
        expected_bad: Counter[str] = Counter()
        expected_rows = []
        for v in values:
            try:
                expected_rows.append(s1.decode_for_topic(topic, v))
            except DecodeError as exc:
                expected_bad[exc.reason] += 1
        got = AvroTopicDecoder(s1, topic).decode_values(values)
        assert got.bad == expected_bad and sum(expected_bad.values()) == 6
        rows = [(g.schema_id, r) for g in got.groups for r in (g.events if isinstance(g.events, list)
                                                                 else g.events.to_pylist())]
        order = [int(i) for g in got.groups for i in g.rows]
        assert sorted(order) == order or len(got.groups) > 1
        by_index = dict(zip(order, rows, strict=True))
        assert [by_index[i] for i in sorted(by_index)] == expected_rows
        cat = CatalogConfig.local(tmp_path).load()
        recs = [WindowRecord(0, i, HOUR_MS + i, None, v) for i, v in enumerate(values)]
        recs.append(WindowRecord(0, len(values), HOUR_MS, b"k", None))
        res = archive_records(cat, topic, v1, AvroTopicDecoder(s1, topic), [recs], HOUR_MS, HOUR_MS + 3_600_000,
                              writer_schema=s1.schema_for_id)
        assert res.rows == len(good) and res.added_columns == ["ab_cell"]
        assert res.undecodable == {**expected_bad, "tombstone": 1}
        data = read_archive(cat, topic).sort_by("kafka_offset")
        assert data.column("ab_cell").to_pylist() == [None] * len(evs) + ["B"] * 5
        assert data.column("event_id").to_pylist() == [e["event_id"] for e in evs] + [e["event_id"] for e in evs[:5]]


@pytest.fixture(scope="module")
def live(archived: dict[str, Any], events: list[SourceEvent], iceberg: IcebergCatalogResource,
         cfg: Settings, live_ks: str) -> Iterator[GraphSpec]:
    """The 'live' graph: what every event means (written down by hand in tests/support/oracle.py, not
    the mapping the backfill runs), written one event at a time as a sink would (no merging)."""
    spec = isolated_spec(live_ks, cfg)
    store = GraphStore.from_spec(spec, cfg.cassandra)
    store.ensure_schema()
    store.write(updates((e.topic, e.key, e.value) for e in events))
    yield spec
    store.kv.drop_keyspaces()
    store.close()


def _checksums(spec: GraphSpec, cfg: Settings) -> dict[str, dict[str, tuple[int, str]]]:
    store = GraphStore.from_spec(spec, cfg.cassandra)
    try:
        session = store.kv.cluster_session("default")
        out = {}
        for name, ns in spec.namespaces.items():
            sums = versions.namespace_checksum(session, ns)
            out[name] = {t.replace(ns.table, "T"): v for t, v in sums.items()}
        return out
    finally:
        store.close()


def test_backfill_reproduces_live_graph(live: GraphSpec, iceberg: IcebergCatalogResource, cfg: Settings) -> None:
    ks = unique_keyspace("rdg_test_lk_bf")
    backfill = build_backfill_asset(archive_topics(cfg.load_spec()), PARTITIONS)
    res = materialize([backfill], partition_key=PARTITION_KEY, resources=_resources(cfg, iceberg, ks))
    assert res.success
    spec = isolated_spec(ks, cfg)
    try:
        got, want = _checksums(spec, cfg), _checksums(live, cfg)
        assert sum(v["T"][0] for v in want.values()) > 50
        assert got == want
    finally:
        store = GraphStore.from_spec(spec, cfg.cassandra)
        store.kv.drop_keyspaces()
        store.close()


@pytest.fixture(scope="module")
def spark_resource(iceberg: IcebergCatalogResource, services: object, cfg: Settings,
                   live_ks: str) -> Iterator[SparkResource]:
    """Spark as definitions.py builds it from the session's settings (RDG_SPARK_MASTER, the jars under
    RDG_CACHE_DIR), on two local cores."""
    base = platform_resources(cfg).spark
    res = SparkResource(master=base.master, jars_dir=base.jars_dir, shuffle_partitions=2)
    session = res.session(iceberg.config(), _cassandra(cfg, live_ks))  # later getOrCreate calls reuse it
    yield res
    session.stop()


@pytest.fixture(scope="module")
def pg_iceberg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IcebergCatalogResource]:
    """The production catalog setting: the catalog database on a real PostgreSQL server."""
    d: Path = tmp_path_factory.mktemp("pg-catalog")
    with postgres_server(d / "server") as (host, port):
        yield IcebergCatalogResource(catalog_name="rdgpg", uri=f"postgresql+psycopg2://{host}:{port}/postgres",
                                     user="postgres", warehouse=(d / "warehouse").as_uri())


def test_postgres_catalog_archive_shared_with_spark(pg_iceberg: IcebergCatalogResource, produced: Counter[str],
                                                    spark_resource: SparkResource, live_ks: str, cfg: Settings,
                                                    archive_assets: list[AssetsDefinition]) -> None:
    """Archive into a Postgres catalog, then read the same tables through Spark's JdbcCatalog on the
    same database, as production would; the catalog rows really are in Postgres."""
    import sqlalchemy as sa

    res = materialize(archive_assets, partition_key=PARTITION_KEY, resources=_resources(cfg, pg_iceberg, live_ks))
    assert res.success
    cat = pg_iceberg.catalog()
    assert read_archive(cat, "member.login", HOUR_MS, HOUR_MS + 3_600_000).num_rows == produced["member.login"]
    engine = sa.create_engine(pg_iceberg.config().sqlalchemy_uri())
    with engine.connect() as con:
        names: set[str] = set(con.execute(sa.text("SELECT table_name FROM iceberg_tables WHERE catalog_name = :c "
                                        "AND table_namespace = 'archive'"), {"c": "rdgpg"}).scalars())
    engine.dispose()
    assert {"member_login", "member_playback", "catalog_titles"} <= names
    spark = spark_resource.session(pg_iceberg.config(), _cassandra(cfg, live_ks))
    n = spark.sql("SELECT count(*) FROM rdgpg.archive.member_playback").collect()[0][0]
    assert n == produced["member.playback"]  # the undecodable record is counted, not archived


def test_iceberg_catalog_shared_with_spark(archived: dict[str, Any], spark_resource: SparkResource,
                                           iceberg: IcebergCatalogResource, produced: Counter[str], cfg: Settings,
                                           live_ks: str) -> None:
    spark = spark_resource.session(iceberg.config(), _cassandra(cfg, live_ks))
    start, end = HOUR.strftime("%Y-%m-%d %H:00:00"), (HOUR + timedelta(hours=1)).strftime("%Y-%m-%d %H:00:00")
    n = spark.sql("SELECT count(*) FROM rdg.archive.member_login WHERE kafka_ts >= to_timestamp(:start) "
                  "AND kafka_ts < to_timestamp(:end)", args={"start": start, "end": end}).collect()[0][0]
    assert n == produced["member.login"]


@pytest.mark.parametrize("namespace", ["edge.started_watching", "node.account"])
def test_spark_rebuild_matches_live_and_switches(namespace: str, live: GraphSpec, spark_resource: SparkResource,
                                                 iceberg: IcebergCatalogResource, live_ks: str, cfg: Settings) -> None:
    ns = live.namespaces[namespace]
    before = _checksums(live, cfg)[namespace]
    result = rebuild_assets.rebuild_namespace_job.execute_in_process(
        # Archive only: these hours lie years back on shared topics (tests/integration/test_rebuild_catchup.py
        # covers the Kafka catch-up and the validation against what the streaming apps wrote).
        run_config={"ops": {"rebuild_namespace_op": {"config": {"namespace": namespace, "catch_up": False}}}},
        resources={"spark": spark_resource, "iceberg": iceberg, "cassandra": _cassandra(cfg, live_ks),
                   "kafka": platform_resources(cfg).kafka})
    assert result.success
    summary = result.output_for_node("rebuild_namespace_op")
    assert summary["switched"] and summary["version"] >= 1
    store = GraphStore.from_spec(live, cfg.cassandra)
    try:
        session = store.kv.cluster_session("default")
        active = versions.active_namespace(session, ns)
        assert active.table == f"{ns.table}_v{summary['version']}"
        rebuilt = versions.namespace_checksum(session, active)
        assert {t.replace(active.table, "T"): v for t, v in rebuilt.items()} == before
        # Readers that honour the pointer see the same graph through the new tables.
        switched = GraphStore.from_spec(versions.apply_namespace_versions(live, {"default": session}), cfg.cassandra)
        try:
            if ns.kind == "node":
                old = store.get_nodes(ns.type, [f"{PREFIX}-a{i}" for i in range(12)])
                assert old and switched.get_nodes(ns.type, list(old)) == old
            else:
                for i in range(12):
                    src = f"{PREFIX}-a{i}-p0"
                    assert switched.edges(ns.type, src).edges == store.edges(ns.type, src).edges
        finally:
            switched.close()
    finally:
        store.close()


def test_maintenance_compacts_and_expires_with_equal_data(archived: dict[str, Any], iceberg: IcebergCatalogResource,
                                                          live: GraphSpec, live_ks: str, cfg: Settings) -> None:
    cat = iceberg.catalog()
    table = cat.load_table("archive.member_gaming")
    lo, hi = HOUR_MS, HOUR_MS + 3_600_000
    before = read_archive(cat, "member.gaming", lo, hi).sort_by(ORDER)
    # Split the hour into three small files (as three separate writers would), data unchanged.
    from rdg_platform.lakehouse.archive import replace_window

    replace_window(table, before.slice(0, 3), lo, hi)
    table.append(before.slice(3, 3))
    table.append(before.slice(6))
    table.refresh()
    hour = lo // 3_600_000
    assert data_files_per_hour(table)[hour] == 3
    snaps_before = len(table.snapshots())
    # Break a namespace's TTL so the Cassandra maintenance has something to fix.
    store = GraphStore.from_spec(live, cfg.cassandra)
    session = store.kv.cluster_session("default")
    plays = live.namespaces["edge.plays"]
    session.execute(f"ALTER TABLE {live_ks}.{plays.table} WITH default_time_to_live = 5")
    try:
        orphans_cfg = {"ops": {"maintenance__iceberg_remove_orphan_files": {"config": {"min_age_hours": 0}}}}
        topics = archive_topics(cfg.load_spec())
        maintenance = maint_assets.build_maintenance_assets(topics)
        res = materialize([*maintenance, maint_assets.cassandra_ttl_tombstone_health],
                          resources=_resources(cfg, iceberg, live_ks), run_config=orphans_cfg)
        assert res.success
        orphan_meta = next(e.step_materialization_data.materialization.metadata
                           for e in res.get_asset_materialization_events()
                           if e.asset_key is not None and e.asset_key.path[-1] == "iceberg_remove_orphan_files")
        tables: Any = orphan_meta["tables"].value
        assert tables["member.gaming"]["orphans_deleted"] > 0  # the files compaction replaced
        table.refresh()
        assert data_files_per_hour(table)[hour] == 1
        assert len(table.snapshots()) < snaps_before
        after = read_archive(cat, "member.gaming", lo, hi).sort_by(ORDER)
        assert after.to_pylist() == before.to_pylist()
        root = Path(table.location().removeprefix("file://"))
        assert {str(p) for p in root.rglob("*") if p.is_file()} == referenced_files(table)
        ttl = session.execute("SELECT default_time_to_live FROM system_schema.tables WHERE keyspace_name = %s "
                              "AND table_name = %s", (live_ks, plays.table)).one()[0]
        assert ttl == plays.ttl_s
        checks = res.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        again = materialize(maintenance[-1:], resources=_resources(cfg, iceberg, live_ks))
        meta = again.get_asset_materialization_events()[0].step_materialization_data.materialization.metadata
        assert meta["tables_changed"].value == {}
        # Retention (last: it empties the archive of this run's hour, which is years old).
        short = IcebergCatalogResource(uri=iceberg.uri, warehouse=iceberg.warehouse, retention_days=1)
        retention = next(a for a in maintenance if a.key == AssetKey(["maintenance", "iceberg_retention"]))
        dropped = materialize([retention], resources=_resources(cfg, short, live_ks))
        meta = dropped.get_asset_materialization_events()[0].step_materialization_data.materialization.metadata
        dropped_rows: Any = meta["rows_dropped"].value
        assert dropped_rows["member.gaming"] == before.num_rows
        assert read_archive(cat, "member.gaming", lo, hi).num_rows == 0
    finally:
        store.close()
