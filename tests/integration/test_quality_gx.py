"""The Great Expectations asset checks fail on corrupted data and pass on clean data.

Archive: a real Iceberg table (temporary SQL catalog, written by the archive module) validated by the
``gx_archive_member_playback`` check set. Graph: real Cassandra namespaces in unique keyspaces,
written through GraphStore, validated by the ``gx_graph_edge_logged_in_from`` check set. Checks run
through Dagster (``execute_in_process`` of a checks-only job), so what is asserted is what the UI shows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetCheckEvaluation, AssetKey, AssetSelection, AssetSpec, Definitions, define_asset_job

from rdg_platform.assets.quality.checks import (
    CHECK_EVENT_ID_UNIQUE,
    CHECK_EVENT_TIME_IN_WINDOW,
    CHECK_FRESHNESS,
    CHECK_IDS_NOT_NULL,
    CHECK_ORPHAN_EDGES,
    CHECK_SCHEMA,
    CHECK_TTL,
    QualityResource,
    build_archive_quality_check,
    build_graph_quality_check,
)
from rdg_platform.kv.graph_store import GraphStore
from rdg_platform.lakehouse.archive import ensure_archive_table, replace_window
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.lakehouse.schema import rows_to_arrow
from rdg_platform.model.mapping import GraphRecord
from rdg_platform.model.spec import load_avro_schema
from rdg_platform.resources import CassandraResource, IcebergCatalogResource, platform_resources
from rdg_platform.settings import Settings, load_settings
from tests.support.kv import isolated_spec, unique_keyspace

pytestmark = pytest.mark.integration

TOPIC = "member.playback"
HOUR = datetime(2024, 5, 1, 10, tzinfo=UTC)


def _playback(i: int, **over: Any) -> dict[str, Any]:
    t = HOUR + timedelta(minutes=i % 60)
    row = {"kafka_topic": TOPIC, "kafka_partition": 0, "kafka_offset": i, "kafka_ts": t, "kafka_key": f"acc-{i}",
           "schema_id": 1, "event_id": f"e{i}", "event_time": t, "account_id": f"acc-{i}", "profile_id": f"p{i}",
           "device_id": f"d{i}", "device_type": "TV", "title_id": "t1", "action": "START", "position_ms": 0,
           "is_live": False}
    row.update(over)
    return row


def _write(base: Path, rows: list[dict[str, Any]]) -> CatalogConfig:
    catalog = CatalogConfig.local(base)
    table, _ = ensure_archive_table(catalog.load(), TOPIC, load_avro_schema("member_playback.avsc"))
    start = int(HOUR.timestamp() * 1000)
    replace_window(table, rows_to_arrow(rows, table.schema()), start, start + 3_600_000)
    return catalog


def _cassandra(cfg: Settings, keyspace: str) -> CassandraResource:
    """The Cassandra resource definitions.py builds from ``cfg``, with namespaces in ``keyspace``."""
    return platform_resources(cfg.model_copy(update={
        "cassandra": cfg.cassandra.model_copy(update={"keyspace": keyspace})})).cassandra


def _run_checks(check: Any, key: AssetKey, resources: dict[str, Any]) -> dict[str, AssetCheckEvaluation]:
    job = define_asset_job("quality_test_job", selection=AssetSelection.checks(check))
    defs = Definitions(assets=[AssetSpec(key)], asset_checks=[check], jobs=[job], resources=resources)
    result = defs.resolve_job_def("quality_test_job").execute_in_process()
    assert result.success
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _archive_evals(catalog: CatalogConfig) -> dict[str, AssetCheckEvaluation]:
    """The archive checks only read the model's Avro schema from the Cassandra resource: the local
    defaults serve (nothing connects)."""
    key = AssetKey(["archive", "member_playback"])
    return _run_checks(build_archive_quality_check(TOPIC, key), key, {
        "iceberg": IcebergCatalogResource(uri=catalog.uri, warehouse=catalog.warehouse),
        "cassandra": platform_resources(load_settings({})).cassandra, "quality": QualityResource(lookback_hours=0)})


def test_archive_suite_passes_on_clean_table(tmp_path: Path) -> None:
    evals = _archive_evals(_write(tmp_path, [_playback(i) for i in range(50)]))
    assert set(evals) == {CHECK_SCHEMA, CHECK_IDS_NOT_NULL, CHECK_EVENT_TIME_IN_WINDOW, CHECK_EVENT_ID_UNIQUE}
    assert all(e.passed for e in evals.values()), {k: e.metadata for k, e in evals.items() if not e.passed}
    assert evals[CHECK_IDS_NOT_NULL].metadata["rows_validated"].value == 50


def test_archive_suite_fails_on_corrupted_table(tmp_path: Path) -> None:
    rows = [_playback(i) for i in range(50)]
    rows[3]["account_id"] = None  # a null id
    rows[4]["event_time"] = HOUR - timedelta(days=3)  # far outside its kafka_ts hour
    rows[5]["event_id"] = rows[6]["event_id"]  # a duplicate event_id
    evals = _archive_evals(_write(tmp_path, rows))
    assert evals[CHECK_SCHEMA].passed
    assert not evals[CHECK_IDS_NOT_NULL].passed
    assert not evals[CHECK_EVENT_TIME_IN_WINDOW].passed
    assert not evals[CHECK_EVENT_ID_UNIQUE].passed
    assert evals[CHECK_IDS_NOT_NULL].metadata["unexpected"].value == 1


def test_archive_suite_fails_when_a_column_is_missing(tmp_path: Path) -> None:
    """A table whose schema lost an Avro field (e.g. written by a wrong job) fails the schema rule."""
    catalog = _write(tmp_path, [_playback(i) for i in range(5)])
    table = catalog.load().load_table("archive.member_playback")
    with table.update_schema() as upd:
        upd.delete_column("title_id")
    evals = _archive_evals(catalog)
    assert not evals[CHECK_SCHEMA].passed


# ------------------------------------------------------------------------------------ graph namespaces
@pytest.fixture
def keyspaces(services: object, cfg: Settings) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for ks in made:
        store = GraphStore.from_spec(isolated_spec(ks, cfg), cfg.cassandra)
        try:
            store.kv.drop_keyspaces()
        finally:
            store.close()


def _graph_store(ks: str, cfg: Settings) -> GraphStore:
    store = GraphStore.from_spec(isolated_spec(ks, cfg), cfg.cassandra)
    store.ensure_schema()
    return store


def _graph_evals(ks: str, cfg: Settings) -> dict[str, AssetCheckEvaluation]:
    key = AssetKey(["graph", "edge", "logged_in_from"])
    return _run_checks(build_graph_quality_check("edge", "logged_in_from", key), key, {
        "cassandra": _cassandra(cfg, ks), "quality": QualityResource(freshness_max_lag_s=3600)})


def test_graph_suite_passes_on_clean_namespace(keyspaces: list[str], cfg: Settings) -> None:
    ks = unique_keyspace("rdg_test_quality_ok")
    keyspaces.append(ks)
    store = _graph_store(ks, cfg)
    now = int(time.time() * 1000)
    try:
        recs = []
        for i in range(20):
            recs += [GraphRecord("node", "account", f"a{i}", None, {"country": "US"}, now),
                     GraphRecord("node", "device", f"d{i}", None, {"device_type": "TV"}, now),
                     GraphRecord("edge", "logged_in_from", f"a{i}", f"d{i}", {"device_type": "TV"}, now)]
        store.write(recs)
    finally:
        store.close()
    evals = _graph_evals(ks, cfg)
    assert set(evals) == {CHECK_TTL, CHECK_FRESHNESS, CHECK_ORPHAN_EDGES}
    assert all(e.passed for e in evals.values()), {k: e.metadata for k, e in evals.items() if not e.passed}


def test_graph_suite_fails_on_corrupted_namespace(keyspaces: list[str], cfg: Settings) -> None:
    ks = unique_keyspace("rdg_test_quality_bad")
    keyspaces.append(ks)
    store = _graph_store(ks, cfg)
    old = int(time.time() * 1000) - 3 * 86_400_000  # three days stale
    try:
        recs = [GraphRecord("node", "account", "a0", None, {}, old), GraphRecord("node", "device", "d0", None, {}, old),
                GraphRecord("edge", "logged_in_from", "a0", "d0", {}, old)]
        # Edges whose endpoint nodes were never written: orphans.
        recs += [GraphRecord("edge", "logged_in_from", f"ghost{i}", f"nodev{i}", {}, old) for i in range(9)]
        store.write(recs)
        # A drifted table: its default TTL no longer matches the spec's.
        ns = store.spec.namespace("edge", "logged_in_from")
        store.kv.cluster_session(ns.cluster).execute(
            f"ALTER TABLE {ns.keyspace}.{ns.table} WITH default_time_to_live = 60")
    finally:
        store.close()
    evals = _graph_evals(ks, cfg)
    assert not evals[CHECK_ORPHAN_EDGES].passed
    assert not evals[CHECK_TTL].passed
    assert not evals[CHECK_FRESHNESS].passed
