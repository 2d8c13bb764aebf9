"""Data quality: Great Expectations suites as Dagster asset checks, on a schedule.

Archive tables (one check set per ``archive/<topic>`` asset) and graph namespaces (one per
``graph/<kind>/<type>`` asset); see :mod:`rdg_platform.assets.quality.checks` for the rules and
:mod:`rdg_platform.assets.quality.suites` for the GX suites. ``quality_checks_job`` runs them all;
``quality_checks_schedule`` runs it every hour at :20 (after the :05 archive run).
"""


from typing import Any

from dagster import AssetSelection, ScheduleDefinition, define_asset_job

from rdg_platform.assets.archive import SOURCE_TOPICS, archive_asset_key
from rdg_platform.assets.quality.checks import QualityResource, build_quality_checks
from rdg_platform.assets.quality.graph_keys import graph_keys
from rdg_platform.model.spec import default_spec

RESOURCE_KEY = "quality"

asset_checks: list[Any] = build_quality_checks({t: archive_asset_key(t) for t in SOURCE_TOPICS},
                                               graph_keys(default_spec()))
_archive_checks = [c for c in asset_checks if c.node_def.name.startswith("gx_archive_")]
_graph_checks = [c for c in asset_checks if c.node_def.name.startswith("gx_graph_")]

quality_checks_job = define_asset_job(
    "quality_checks_job", selection=AssetSelection.checks(*asset_checks),
    description="Run every Great Expectations suite (archive tables and graph namespaces).")
archive_quality_job = define_asset_job(
    "archive_quality_job", selection=AssetSelection.checks(*_archive_checks),
    description="Run the Great Expectations suites of the archive tables.")
graph_quality_job = define_asset_job(
    "graph_quality_job", selection=AssetSelection.checks(*_graph_checks),
    description="Run the Great Expectations suites of the graph namespaces.")

assets: list[Any] = []
jobs: list[Any] = [quality_checks_job, archive_quality_job, graph_quality_job]
schedules: list[Any] = [ScheduleDefinition(name="quality_checks_schedule", job=quality_checks_job,
                                           cron_schedule="20 * * * *", execution_timezone="UTC",
                                           description="Hourly data quality run (GX suites as asset checks).")]
sensors: list[Any] = []

__all__ = ["RESOURCE_KEY", "QualityResource", "asset_checks", "assets", "jobs", "schedules", "sensors"]
