"""The one Definitions entry point: every domain merged, resources built from settings, EnvVar names
that are settings names, and each domain's Definitions complete on its own."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, ConfigurableResource, Definitions, EnvVar

from rdg_platform.settings import SettingsError, load_settings, setting_names

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_GROUPS = {"archive", "backfill", "maintenance", "streaming_apps", "graph", "dbt"}
EXPECTED_JOBS = {"archive_hourly_job", "quality_checks_job", "archive_quality_job", "graph_quality_job",
                 "lakehouse_maintenance_job", "rebuild_namespace_job", "deploy_streaming_apps",
                 "scale_streaming_app", "stop_streaming_apps", "restart_streaming_app", "streaming_lag_alert"}
# What a production deploy sets (values are placeholders; nothing connects).
PROD_ENV = {
    "RDG_ENV": "prod",
    "RDG_KAFKA_BOOTSTRAP": "kafka-0.kafka:9092,kafka-1.kafka:9092",
    "RDG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "RDG_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "RDG_KAFKA_SASL_USERNAME": "rdg-app",
    "RDG_KAFKA_SASL_PASSWORD": "kafka-secret",
    "RDG_REGISTRY_URL": "https://registry.example/apis/ccompat/v7",
    "RDG_REGISTRY_USERNAME": "rdg",
    "RDG_REGISTRY_PASSWORD": "registry-secret",
    "RDG_CASSANDRA_CONTACT_POINTS": "cass-0.cassandra,cass-1.cassandra",
    "RDG_CASSANDRA_USERNAME": "rdg_app",
    "RDG_CASSANDRA_PASSWORD": "cassandra-secret",
    "RDG_ICEBERG_CATALOG_URI": "postgresql+psycopg2://catalog.example/iceberg",
    "RDG_ICEBERG_CATALOG_USER": "iceberg",
    "RDG_ICEBERG_CATALOG_PASSWORD": "catalog-secret",
    "RDG_ICEBERG_WAREHOUSE": "s3://rdg-warehouse/iceberg",
    "RDG_SPARK_MASTER": "spark://spark-master:7077",
    "RDG_S3_ENDPOINT": "https://s3.example",
    "RDG_S3_ACCESS_KEY_ID": "rdg",
    "RDG_S3_SECRET_ACCESS_KEY": "s3-secret",
    "RDG_S3_REGION": "eu-west-1",
}
SECRETS = {"RDG_KAFKA_SASL_PASSWORD", "RDG_REGISTRY_PASSWORD", "RDG_CASSANDRA_PASSWORD",
           "RDG_ICEBERG_CATALOG_PASSWORD", "RDG_S3_SECRET_ACCESS_KEY"}


@pytest.fixture(scope="module", autouse=True)
def dbt_manifest() -> Iterator[None]:
    """The dbt manifest is a build artefact outside ``dagster dev``: build it as the image build does."""
    from rdg_platform.assets.dbt import dbt_project, prepare

    prepare(dbt_project(load_settings({})))
    yield


@pytest.fixture(scope="module")
def prod_defs() -> Definitions:
    from rdg_platform.definitions import build_definitions

    return build_definitions(load_settings(PROD_ENV))


def _env_vars(defs: Definitions) -> dict[str, set[str]]:
    """resource key -> the names of the EnvVars its fields hold."""
    out: dict[str, set[str]] = {}
    for key, res in (defs.resources or {}).items():
        if isinstance(res, ConfigurableResource):
            out[key] = {v.env_var_name for f in type(res).model_fields if isinstance(v := getattr(res, f), EnvVar)}
    return out


def test_definitions_load_every_domain() -> None:
    from rdg_platform.definitions import defs

    repo = defs.get_repository_def()
    graph = repo.asset_graph
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert EXPECTED_GROUPS <= groups, groups
    assert EXPECTED_JOBS <= {j.name for j in repo.get_all_jobs()}
    assert "streaming_apps_health_sensor" in {s.name for s in repo.sensor_defs}
    assert {"quality_checks_schedule", "archive_hourly_schedule", "lakehouse_maintenance_daily"} <= {
        s.name for s in repo.schedule_defs}
    assert {"kafka", "cassandra", "iceberg", "spark", "streaming_launcher", "quality", "dbt"} <= set(
        repo.get_top_level_resources())
    check_names = {k.name for k in graph.asset_check_keys}
    assert {"gx_schema", "gx_ids_not_null", "gx_event_time_in_window", "gx_event_id_unique", "gx_orphan_edges",
            "gx_ttl", "gx_freshness", "app_running", "consumer_lag_below_threshold",
            "cassandra_ttl_tombstone_health", "archive_hour_unique_and_complete"} <= check_names


def test_archive_assets_follow_the_spec_and_topology(tmp_path: Path) -> None:
    from rdg_platform.assets import archive
    from rdg_platform.topology import archive_table

    s = load_settings({"RDG_STATE_DIR": str(tmp_path)})
    spec = s.load_spec()
    keys = {k for a in archive.defs(s).assets or [] for k in a.keys}  # type: ignore[union-attr]
    assert keys == {AssetKey(["archive", archive_table(src.topic)]) for src in spec.sources.values()}
    assert AssetKey(["archive", "member_login"]) in keys and AssetKey(["archive", "catalog_games"]) in keys


def test_dbt_models_are_downstream_of_the_archive() -> None:
    from rdg_platform.definitions import defs

    graph = defs.get_repository_def().asset_graph
    parents = graph.get(AssetKey(["analytics", "stg_member_playback"])).parent_keys
    assert AssetKey(["archive", "member_playback"]) in parents
    for model in ("member_cross_device_journeys", "daily_active_accounts_by_vertical", "dedup_ratio_hourly"):
        assert graph.has(AssetKey(["analytics", model]))


@pytest.mark.parametrize("domain", ["archive", "backfill", "rebuild", "maintenance", "quality", "dbt"])
def test_each_domain_owns_complete_definitions(domain: str, tmp_path: Path) -> None:
    """A domain's Definitions carry every resource its assets, checks and jobs need (a missing one
    fails resolution), so a domain loads on its own."""
    mod = importlib.import_module(f"rdg_platform.assets.{domain}")
    d = mod.defs(load_settings({"RDG_STATE_DIR": str(tmp_path)}))
    assert isinstance(d, Definitions)
    d.get_repository_def()


def test_local_resources_come_from_settings(tmp_path: Path) -> None:
    from rdg_platform.resources import platform_resources

    # The SASL password comes from the RDG_CONFIG file here (the run worker's environment lacks it, so
    # it is passed as a value); from the environment it is an EnvVar (below).
    (tmp_path / "rdg.yaml").write_text("RDG_KAFKA_SASL_PASSWORD: p\n")
    env = {"RDG_STATE_DIR": str(tmp_path), "RDG_KAFKA_PORT": "19092", "RDG_REGISTRY_PORT": "18081",
           "RDG_CASSANDRA_PORT": "19042", "RDG_CASSANDRA_KEYSPACE": "ks_x", "RDG_SPARK_MASTER": "local[3]",
           "RDG_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RDG_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "RDG_KAFKA_SASL_USERNAME": "u", "RDG_CACHE_DIR": str(tmp_path / "cache"),
           "RDG_CONFIG": str(tmp_path / "rdg.yaml")}
    res = platform_resources(load_settings(env))
    kafka, cassandra, iceberg, spark = res.kafka, res.cassandra, res.iceberg, res.spark
    assert kafka.bootstrap_servers == "127.0.0.1:19092"
    assert kafka.schema_registry_url == "http://127.0.0.1:18081/apis/ccompat/v7"
    from_env = platform_resources(load_settings({**env, "RDG_KAFKA_SASL_PASSWORD": "p"})).kafka.sasl_password
    assert isinstance(from_env, EnvVar) and from_env.env_var_name == "RDG_KAFKA_SASL_PASSWORD"
    # The lag reads and the archive's window reader get SASL from the same settings.
    assert kafka.client_config() == {"bootstrap.servers": "127.0.0.1:19092", "security.protocol": "SASL_PLAINTEXT",
                                     "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u", "sasl.password": "p"}
    assert (cassandra.contact_points, cassandra.port, cassandra.keyspace) == ("127.0.0.1", 19042, "ks_x")
    assert cassandra.spec().clusters["default"].port == 19042
    assert {ns.keyspace for ns in cassandra.spec().namespaces.values()} == {"ks_x"}
    assert iceberg.uri == f"sqlite:///{tmp_path.resolve() / 'iceberg' / 'catalog.db'}"
    assert iceberg.warehouse == (tmp_path.resolve() / "iceberg" / "warehouse").as_uri()
    assert spark.master == "local[3]" and spark.jars_dir == str(tmp_path / "cache" / "jars" / "spark")


def test_prod_environment_builds(prod_defs: Definitions) -> None:
    prod_defs.get_repository_def()
    res = prod_defs.resources or {}
    assert res["streaming_launcher"].kind == "kubernetes"
    assert res["quality"].freshness_max_lag_s == 900
    env_vars = _env_vars(prod_defs)
    # Endpoints and secrets reach prod resources as EnvVars, never as literal values.
    assert {"RDG_KAFKA_BOOTSTRAP", "RDG_REGISTRY_URL", "RDG_KAFKA_SASL_PASSWORD", "RDG_REGISTRY_PASSWORD"} <= env_vars[
        "kafka"]
    assert {"RDG_CASSANDRA_CONTACT_POINTS", "RDG_CASSANDRA_PASSWORD"} <= env_vars["cassandra"]
    assert {"RDG_ICEBERG_CATALOG_URI", "RDG_ICEBERG_WAREHOUSE", "RDG_ICEBERG_CATALOG_PASSWORD",
            "RDG_S3_SECRET_ACCESS_KEY"} <= env_vars["iceberg"]
    assert prod_defs.resources is not None and prod_defs.resources["iceberg"].s3_region == "eu-west-1"
    assert env_vars["spark"] == {"RDG_SPARK_MASTER"}
    literal_values = {str(v) for r in (prod_defs.resources or {}).values() if isinstance(r, ConfigurableResource)
                      for f in type(r).model_fields if not isinstance(v := getattr(r, f), EnvVar)}
    assert not {PROD_ENV[n] for n in SECRETS} & literal_values


def test_prod_without_endpoints_fails_naming_them() -> None:
    from rdg_platform.definitions import build_definitions

    with pytest.raises(SettingsError, match="RDG_KAFKA_BOOTSTRAP.*RDG_CASSANDRA_CONTACT_POINTS"):
        build_definitions(load_settings({"RDG_ENV": "prod"}))
    with pytest.raises(SettingsError, match="RDG_ENV"):
        load_settings({"RDG_ENV": "staging"})


def test_every_envvar_is_a_setting_name(prod_defs: Definitions) -> None:
    names = set(setting_names())
    used = set().union(*_env_vars(prod_defs).values())
    assert used and used <= names, used - names
    # And every EnvVar spelled anywhere in the package (branches a build may not take).
    spelled = {m.group(1) for p in (ROOT / "rdg_platform").rglob("*.py")
               for m in re.finditer(r"EnvVar(?:\.int)?\(\s*[\"']([A-Za-z0-9_]+)[\"']", p.read_text())}
    assert spelled <= names, spelled - names

