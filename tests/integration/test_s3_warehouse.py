"""The Iceberg warehouse on ``s3://``: pyiceberg archives into S3Proxy, Spark rebuilds from it.

Real services only: S3Proxy 2.6.0 (started once per session through ``rdg services``' manager, with
its per-state-dir credentials), the schema registry for the Avro wire format and Cassandra for the
rebuilt namespace. The archive is written with the archive function (``archive_records``) from
framed Avro records of one hour, the bucket is listed with a signed S3 client of its own
(``pyarrow.fs.S3FileSystem``), then the Spark rebuild (``local[2]`` here; the standalone cluster in
``test_spark_cluster.py``) reads the tables through Iceberg-Java's S3FileIO and writes the namespace.

What the rebuilt ``logged_in_from`` edges must hold is written down here from the login events
themselves (one edge per account/device, its ``last_login_ts`` the latest login, its
``device_type`` that of the latest login), not derived through the mapping code under test.

Isolation on shared services: a fresh bucket, catalog, keyspace and id prefix per module.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pyarrow import fs

from rdg_platform.avro import AvroSerde, SchemaRegistry
from rdg_platform.avro.bulk import AvroTopicDecoder
from rdg_platform.kv import versions
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.lakehouse.archive import archive_records, read_archive
from rdg_platform.lakehouse.backfill import build_lookup
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.lakehouse.kafka_window import WindowRecord
from rdg_platform.lakehouse.spark import RebuildResult, SparkConfig, ensure_spark_jars, rebuild_namespace
from rdg_platform.local_services.manager import ServiceManager
from rdg_platform.local_services.s3proxy import CLIENT_ENV, S3ProxyService, ensure_bucket
from rdg_platform.local_services.testing import ensure_services
from rdg_platform.model import GraphSpec
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace
from tests.support.lakehouse import SourceEvent, generate_events

pytestmark = pytest.mark.integration

HOUR_MS = 1_600_000_000_000 - 1_600_000_000_000 % 3_600_000  # 2020-09-13 12:00 UTC, years before TTLs matter
EDGE = "edge.logged_in_from"


@dataclass(frozen=True)
class S3Warehouse:
    """A catalog on S3Proxy and the endpoint/keys to inspect its bucket independently."""

    catalog: CatalogConfig
    bucket: str
    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str

    def filesystem(self) -> fs.S3FileSystem:
        """A signed S3 client of its own (not pyiceberg's) for checking what is in the bucket."""
        return fs.S3FileSystem(access_key=self.access_key_id, secret_key=self.secret_access_key,
                               region=self.region, endpoint_override=self.endpoint, scheme="http",
                               force_virtual_addressing=False)


@pytest.fixture(scope="session")
def s3proxy(cfg: Settings) -> Iterator[S3ProxyService]:
    """S3Proxy started (or reused) for the session's state dir; fails the tests if it cannot start.

    The AWS SDK inside pyarrow must send plain signed uploads to S3Proxy 2.6.0 (see ``CLIENT_ENV``);
    it reads that only from the environment, so the session sets it here, as an entry point would.
    """
    manager: ServiceManager = ensure_services(cfg, ["s3proxy"])
    service = manager.services["s3proxy"]
    assert isinstance(service, S3ProxyService)
    saved = {k: os.environ.get(k) for k in CLIENT_ENV}
    os.environ.update(CLIENT_ENV)
    yield service
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def s3_warehouse(service: S3ProxyService, base: Path, name: str = "rdg") -> S3Warehouse:
    """A fresh bucket and a SQLite catalog whose warehouse is ``s3://<bucket>/warehouse``."""
    creds = service.credentials
    bucket = f"rdg-test-{uuid.uuid4().hex[:10]}"
    ensure_bucket(service.endpoint, creds, bucket)
    catalog = CatalogConfig(name=name, uri=f"sqlite:///{base / 'catalog.db'}", warehouse=f"s3://{bucket}/warehouse",
                            s3_endpoint=service.endpoint, s3_access_key_id=creds.access_key_id,
                            s3_secret_access_key=creds.secret_access_key, s3_region=service.region,
                            s3_path_style_access=True)
    return S3Warehouse(catalog, bucket, service.endpoint, creds.access_key_id, creds.secret_access_key,
                       service.region)


def archive_events(cfg: Settings, catalog: CatalogConfig, spec: GraphSpec, events: list[SourceEvent]) -> dict[str, int]:
    """Archive the hour's events as the archive job would: framed Avro (real registry) in, Iceberg out.

    Records get Kafka coordinates per topic (partition 0, offsets in order); returns rows per topic.
    """
    cat = catalog.load()
    serde = AvroSerde(SchemaRegistry.from_settings(cfg.registry))
    rows: dict[str, int] = {}
    for topic, source in spec.sources.items():
        mine = [e for e in events if e.topic == topic]
        if not mine:
            continue
        records = [WindowRecord(0, i, e.timestamp_ms, e.key.encode(), serde.encode(topic, e.value))
                   for i, e in enumerate(mine)]
        res = archive_records(cat, topic, source.schema, AvroTopicDecoder(serde, topic), [records], HOUR_MS,
                              HOUR_MS + 3_600_000, writer_schema=serde.schema_for_id)
        assert res.rows == len(mine) and not res.undecodable, (topic, res)
        rows[topic] = res.rows
    return rows


def expected_logins(events: list[SourceEvent]) -> dict[tuple[str, str], dict[str, Any]]:
    """What the login events mean for ``logged_in_from``: one edge per (account, device); the latest
    login gives ``last_login_ts`` (= the edge's ``updated_at``) and ``device_type`` (never null)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for e in sorted((e for e in events if e.topic == "member.login"), key=lambda e: e.value["event_time"]):
        v = e.value
        out[(v["account_id"], v["device_id"])] = {"last_login_ts": v["event_time"], "device_type": v["device_type"]}
    return out


def spark_config(cfg: Settings, master: str, **extra: str) -> SparkConfig:
    """The rebuild's Spark settings on the session's Cassandra (auth when the session has it)."""
    password = cfg.cassandra.password.get_secret_value() if cfg.cassandra.password else None
    return SparkConfig(master=master, app_name="rdg-test-s3", driver_memory="1g", shuffle_partitions=2,
                       cassandra_host=cfg.cassandra.hosts[0], cassandra_port=cfg.cassandra.port,
                       cassandra_username=cfg.cassandra.username, cassandra_password=password, extra=extra)


def spark_jar_list(cfg: Settings) -> list[str]:
    return ensure_spark_jars(cfg.cache_dir / "jars" / "spark")


def rebuild_and_check(spark: Any, catalog: CatalogConfig, spec: GraphSpec, cfg: Settings,
                      events: list[SourceEvent]) -> RebuildResult:
    """Rebuild ``logged_in_from`` from the archive and compare the active tables with the events."""
    lookup = build_lookup(catalog.load(), spec)
    res = rebuild_namespace(spark, catalog, spec, EDGE, lookup, cassandra=cfg.cassandra)
    want = expected_logins(events)
    assert res.switched and res.keys == len(want), (res, len(want))
    assert res.rows_read_back == {t: len(want) for t in res.tables}
    store = GraphStore.from_spec(spec, cfg.cassandra)
    try:
        session = store.kv.cluster_session("default")
        active = versions.apply_namespace_versions(spec, {"default": session})
        assert active.namespaces[EDGE].table == res.tables[0]
        rebuilt = GraphStore.from_spec(active, cfg.cassandra)
        try:
            got: dict[tuple[str, str], dict[str, Any]] = {}
            for account in sorted({a for a, _ in want}):
                for edge in rebuilt.edges("logged_in_from", account, limit=1000).edges:
                    got[(edge.src, edge.dst)] = {"last_login_ts": edge.updated_at,
                                                 "device_type": edge.properties["device_type"]}
                    assert edge.properties["last_login_ts"] == edge.updated_at
            assert got == want
            for (account, device), props in want.items():  # the reverse adjacency agrees
                back = rebuilt.edges("logged_in_from", device, direction="in", limit=1000).edges
                assert [(e.src, e.updated_at) for e in back if e.src == account] == [(account, props["last_login_ts"])]
        finally:
            rebuilt.close()
    finally:
        store.kv.drop_keyspaces()
        store.close()
    return res


# ------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def warehouse(s3proxy: S3ProxyService, tmp_path_factory: pytest.TempPathFactory) -> S3Warehouse:
    return s3_warehouse(s3proxy, tmp_path_factory.mktemp("s3-catalog"))


@pytest.fixture(scope="module")
def events() -> list[SourceEvent]:
    return generate_events(HOUR_MS, n_members=10, events_per_member=8, prefix=f"s3{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def s3_spec(services: object, cfg: Settings) -> GraphSpec:
    """The model in a keyspace of its own on the session's Cassandra (dropped after the rebuild check)."""
    return isolated_spec(unique_keyspace("rdg_test_s3"), cfg)


@pytest.fixture(scope="module")
def archived(warehouse: S3Warehouse, cfg: Settings, s3_spec: GraphSpec, events: list[SourceEvent]) -> dict[str, int]:
    return archive_events(cfg, warehouse.catalog, s3_spec, events)


def test_archive_lands_in_the_s3proxy_bucket(archived: dict[str, int], warehouse: S3Warehouse,
                                             s3proxy: S3ProxyService, events: list[SourceEvent]) -> None:
    """pyiceberg wrote data and metadata objects into the bucket, readable back through the catalog."""
    s3 = warehouse.filesystem()
    files = [i.path for i in s3.get_file_info(fs.FileSelector(f"{warehouse.bucket}/warehouse", recursive=True))
             if i.type == fs.FileType.File]
    for topic in archived:
        table_dir = f"{warehouse.bucket}/warehouse/archive/{topic.replace('.', '_')}/"
        assert any(f.startswith(table_dir + "data/") and f.endswith(".parquet") for f in files), (topic, files)
        assert any(f.startswith(table_dir + "metadata/") and f.endswith(".metadata.json") for f in files), topic
    assert s3proxy.data_dir.joinpath(warehouse.bucket, "warehouse", "archive").is_dir()  # filesystem backend
    cat = warehouse.catalog.load()
    logins = read_archive(cat, "member.login", HOUR_MS, HOUR_MS + 3_600_000)
    assert logins.num_rows == archived["member.login"] == sum(e.topic == "member.login" for e in events)
    table = cat.load_table("archive.member_login")
    assert table.location().startswith(f"s3://{warehouse.bucket}/warehouse/")


def test_signed_requests_only(warehouse: S3Warehouse, archived: dict[str, int]) -> None:
    """S3Proxy refuses a wrong secret: the warehouse is not open to anyone on the machine."""
    bad = replace(warehouse, secret_access_key="not-the-secret").filesystem()
    with pytest.raises(OSError):
        bad.get_file_info(fs.FileSelector(f"{warehouse.bucket}/warehouse", recursive=True))


def test_spark_rebuild_reads_the_s3_warehouse(archived: dict[str, int], warehouse: S3Warehouse, s3_spec: GraphSpec,
                                              cfg: Settings, events: list[SourceEvent]) -> None:
    """Spark (Iceberg's S3FileIO from iceberg-aws-bundle) reads the archive on S3Proxy and the rebuilt
    namespace holds exactly what the login events say."""
    from rdg_platform.lakehouse.spark import build_spark_session

    spark = build_spark_session(spark_config(cfg, "local[2]"), warehouse.catalog, spark_jar_list(cfg))
    try:
        conf = spark.sparkContext.getConf()
        assert conf.get(f"spark.sql.catalog.{warehouse.catalog.name}.io-impl") == "org.apache.iceberg.aws.s3.S3FileIO"
        n = spark.sql("SELECT count(*) FROM rdg.archive.member_login").collect()[0][0]
        assert n == archived["member.login"]
        rebuild_and_check(spark, warehouse.catalog, s3_spec, cfg, events)
    finally:
        spark.stop()
