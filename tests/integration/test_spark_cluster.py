"""The namespace rebuild on a Spark standalone cluster (``spark://``) instead of ``local[*]``.

A master and a worker from the pyspark wheel are started once per session by the project's own
code (:class:`SparkCluster`), on loopback. The rebuild then runs with only the master URL changed:
executors are separate JVMs launched by the worker, so the Iceberg runtime, the AWS bundle and the
Cassandra connector must reach them through ``spark.jars`` (checked in the worker's directory), and
the mapping code reaches their Python workers pickled. The archive is the same ``s3://`` warehouse
on S3Proxy as in ``test_s3_warehouse.py``, with the same checks: the rebuilt ``logged_in_from``
edges equal what the login events say.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdg_platform.lakehouse.spark import build_spark_session
from rdg_platform.local_services.s3proxy import S3ProxyService
from rdg_platform.local_services.spark_cluster import SparkCluster
from rdg_platform.model import GraphSpec
from rdg_platform.settings import Settings
from tests.integration.test_s3_warehouse import (
    HOUR_MS,
    S3Warehouse,
    archive_events,
    rebuild_and_check,
    s3_warehouse,
    s3proxy,  # noqa: F401  (the session fixture, shared)
    spark_config,
    spark_jar_list,
)
from tests.support.kv import isolated_spec, unique_keyspace
from tests.support.lakehouse import SourceEvent, generate_events

pytestmark = pytest.mark.integration

# Jars the rebuild cannot run without on an executor: Iceberg (+ S3FileIO's SDK) to scan the archive,
# the connector to read the rebuilt tables back.
SHIPPED = ("iceberg-spark-runtime-3.5_2.12", "iceberg-aws-bundle", "spark-cassandra-connector_2.12")


@pytest.fixture(scope="session")
def spark_cluster(cfg: Settings) -> Iterator[SparkCluster]:
    """The standalone cluster for this session's state dir; fails the tests if it cannot start.

    Stopped at the end only if this session started it (a developer's running cluster is left alone).
    """
    cluster = SparkCluster(cfg, echo=print)
    was_running = cluster.is_healthy()
    cluster.up()
    yield cluster
    if not was_running:
        cluster.down()


@pytest.fixture(scope="module")
def warehouse(s3proxy: S3ProxyService, tmp_path_factory: pytest.TempPathFactory) -> S3Warehouse:  # noqa: F811
    return s3_warehouse(s3proxy, tmp_path_factory.mktemp("cluster-catalog"))


@pytest.fixture(scope="module")
def events() -> list[SourceEvent]:
    return generate_events(HOUR_MS, n_members=10, events_per_member=8, prefix=f"sc{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def cluster_spec(services: object, cfg: Settings) -> GraphSpec:
    """The model in a keyspace of its own on the session's Cassandra (dropped after the rebuild check)."""
    return isolated_spec(unique_keyspace("rdg_test_sc"), cfg)


def test_cluster_is_up_on_loopback(spark_cluster: SparkCluster) -> None:
    state = spark_cluster.master_state()
    assert state is not None and state["status"] == "ALIVE" and state["aliveworkers"] == 1
    assert spark_cluster.master_url == f"spark://127.0.0.1:{spark_cluster.config.master_port}"
    assert all(w["host"] == "127.0.0.1" for w in state["workers"])


def test_rebuild_on_the_standalone_cluster(spark_cluster: SparkCluster, warehouse: S3Warehouse,
                                           cluster_spec: GraphSpec, cfg: Settings,
                                           events: list[SourceEvent]) -> None:
    """Only the master URL differs from local mode; the result is the same, checked the same way."""
    archive_events(cfg, warehouse.catalog, cluster_spec, events)
    conf = spark_config(cfg, spark_cluster.master_url, **{"spark.executor.memory": "1g", "spark.cores.max": "2"})
    spark = build_spark_session(conf, warehouse.catalog, spark_jar_list(cfg))
    try:
        sc = spark.sparkContext
        assert sc.master == spark_cluster.master_url
        app_id = sc.applicationId
        res = rebuild_and_check(spark, warehouse.catalog, cluster_spec, cfg, events)
        assert res.keys > 0
        # The work ran in executors launched by the worker, which fetched the jars from the driver.
        executor_dirs = [d for d in (spark_cluster.work_dir / app_id).iterdir() if d.is_dir()]
        assert executor_dirs, f"no executor ran for {app_id}"
        fetched = {p.name for d in executor_dirs for p in Path(d).glob("*.jar")}
        for prefix in SHIPPED:
            assert any(name.startswith(prefix) for name in fetched), (prefix, sorted(fetched))
        app = [a for a in (spark_cluster.master_state() or {}).get("activeapps", []) if a.get("id") == app_id]
        assert app and app[0]["cores"] > 0
    finally:
        spark.stop()
