"""The one Definitions entry point loads, with every domain, resource, job, schedule and sensor."""

from __future__ import annotations

import pytest

EXPECTED_GROUPS = {"archive", "backfill", "maintenance", "streaming_apps", "graph", "dbt"}
EXPECTED_JOBS = {"archive_hourly_job", "quality_checks_job", "archive_quality_job", "graph_quality_job",
                 "deploy_streaming_apps", "scale_streaming_app", "stop_streaming_apps", "restart_streaming_app",
                 "streaming_lag_alert"}


def test_definitions_load_every_domain() -> None:
    from rdg_platform.definitions import defs

    repo = defs.get_repository_def()
    graph = repo.asset_graph
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert EXPECTED_GROUPS <= groups, groups
    assert EXPECTED_JOBS <= {j.name for j in repo.get_all_jobs()}
    assert "streaming_apps_health_sensor" in {s.name for s in repo.sensor_defs}
    assert "quality_checks_schedule" in {s.name for s in repo.schedule_defs}
    assert {"kafka", "cassandra", "iceberg", "spark", "streaming_launcher", "quality", "dbt"} <= set(
        repo.get_top_level_resources())
    check_names = {k.name for k in graph.asset_check_keys}
    assert {"gx_schema", "gx_ids_not_null", "gx_event_time_in_window", "gx_event_id_unique", "gx_orphan_edges",
            "gx_ttl", "gx_freshness", "app_running", "consumer_lag_below_threshold"} <= check_names


def test_dbt_models_are_downstream_of_the_archive() -> None:
    from dagster import AssetKey

    from rdg_platform.definitions import defs

    graph = defs.get_repository_def().asset_graph
    parents = graph.get(AssetKey(["analytics", "stg_member_playback"])).parent_keys
    assert AssetKey(["archive", "member_playback"]) in parents
    for model in ("member_cross_device_journeys", "daily_active_accounts_by_vertical", "dedup_ratio_hourly"):
        assert graph.has(AssetKey(["analytics", model]))


def test_prod_environment_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    from rdg_platform.definitions import build_definitions, current_env

    monkeypatch.setenv("RDG_ENV", "prod")
    assert current_env() == "prod"
    from rdg_platform.definitions import build_resources

    res = build_resources("prod")
    assert res["streaming_launcher"].kind == "kubernetes"
    assert res["quality"].freshness_max_lag_s == 900
    build_definitions().get_repository_def()
    monkeypatch.setenv("RDG_ENV", "staging")
    with pytest.raises(ValueError, match="RDG_ENV"):
        current_env()
