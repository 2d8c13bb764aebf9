"""Data quality: Great Expectations suites as Dagster asset checks, on a schedule.

Archive tables (one check set per ``archive/<table>`` asset) and graph namespaces (one per
``graph/<kind>/<type>`` asset); see :mod:`rdg_platform.assets.quality.checks` for the rules and
:mod:`rdg_platform.assets.quality.suites` for the GX suites. ``quality_checks_job`` runs them all;
``quality_checks_schedule`` runs it every hour at :20 (after the :05 archive run).
"""


from dagster import AssetSelection, Definitions, ScheduleDefinition, define_asset_job

from rdg_platform.assets.archive import archive_asset_key, archive_topics, default_schedule_status
from rdg_platform.assets.quality.checks import QualityResource, build_quality_checks
from rdg_platform.assets.quality.graph_keys import graph_keys
from rdg_platform.resources import CASSANDRA, ICEBERG, PlatformResources, platform_resources
from rdg_platform.settings import Settings

RESOURCE_KEY = "quality"
JOB = "quality_checks_job"


def quality_resource(settings: Settings) -> QualityResource:
    """Thresholds per environment: production is bigger and busier (longer windows, larger samples,
    a tighter freshness bound)."""
    if settings.env == "prod":
        return QualityResource(lookback_hours=6, max_rows=1_000_000, sample_size=10_000,
                               duplicate_event_id_rate=0.001, freshness_max_lag_s=900)
    return QualityResource()


def defs(settings: Settings, resources: PlatformResources | None = None) -> Definitions:
    """The quality domain: the GX checks of every archive table and graph namespace of the spec, a job
    for all of them, one per family, and the hourly schedule."""
    res = resources if resources is not None else platform_resources(settings)
    spec = settings.load_spec()
    checks = build_quality_checks({t: archive_asset_key(t) for t in archive_topics(spec)}, graph_keys(spec))
    archive_checks = [c for c in checks if c.node_def.name.startswith("gx_archive_")]
    graph_checks = [c for c in checks if c.node_def.name.startswith("gx_graph_")]
    all_job = define_asset_job(JOB, selection=AssetSelection.checks(*checks),
                               description="Run every Great Expectations suite (archive tables and graph namespaces).")
    return Definitions(
        asset_checks=checks,
        jobs=[all_job,
              define_asset_job("archive_quality_job", selection=AssetSelection.checks(*archive_checks),
                               description="Run the Great Expectations suites of the archive tables."),
              define_asset_job("graph_quality_job", selection=AssetSelection.checks(*graph_checks),
                               description="Run the Great Expectations suites of the graph namespaces.")],
        schedules=[ScheduleDefinition(name="quality_checks_schedule", job=all_job, cron_schedule="20 * * * *",
                                      execution_timezone="UTC", default_status=default_schedule_status(settings),
                                      description="Hourly data quality run (GX suites as asset checks).")],
        resources={**res.select(ICEBERG, CASSANDRA), RESOURCE_KEY: quality_resource(settings)},
    )


__all__ = ["RESOURCE_KEY", "QualityResource", "defs", "quality_resource"]
