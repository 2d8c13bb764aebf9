"""History assets: the graph history tables (``<catalog>.history.node_<type>`` / ``edge_<type>``), hour by hour.

``history/graph`` is partitioned like the archive (hourly, UTC) and downstream of every archive asset:
materialising hour H derives the graph records of the source records archived in H through the
stream's mapping (:func:`rdg_platform.history.tables.derive_window`) and replaces H's rows in every
history table. Its embedded check compares the hour with the source archive: every archived member
event is either the source of history rows or counted as giving none, and no history row names a
source record the archive does not hold. ``history/maintenance`` (daily) compacts each day's files into
one file sorted by origin and drops rows past ``RDG_HISTORY_RETENTION_DAYS`` (which must exceed the
longest namespace TTL).
"""

from datetime import timedelta

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Definitions,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from rdg_platform.assets.archive import archive_asset_key, archive_partitions_def, default_schedule_status
from rdg_platform.history.tables import (
    check_retention,
    compact,
    derive_window,
    drop_older_than,
    ensure_tables,
    table_name,
    window_counts,
)
from rdg_platform.lakehouse.archive import read_archive
from rdg_platform.lakehouse.kafka_window import hour_window
from rdg_platform.model.spec import GraphSpec
from rdg_platform.resources import (
    ICEBERG,
    IcebergCatalogResource,
    PlatformResources,
    platform_resources,
)
from rdg_platform.settings import Settings

GROUP = "history"
CHECK = "history_hour_matches_archive"
GRAPH_KEY = AssetKey(["history", "graph"])
MAINTENANCE_KEY = AssetKey(["history", "maintenance"])


def build_history_asset(settings: Settings, spec: GraphSpec) -> AssetsDefinition:
    namespace = settings.history.namespace

    @asset(
        key=GRAPH_KEY, group_name=GROUP, partitions_def=archive_partitions_def(settings, spec), kinds={"iceberg"},
        deps=[archive_asset_key(t) for t in spec.mappings],
        description=(f"Graph records derived from the hour's archived source records through the mapping, in "
                     f"`{namespace}.node_<type>` / `{namespace}.edge_<type>` (edges stored out and in; partitioned "
                     "by day of ingest, sorted by origin). Re-materialising an hour replaces it."),
        check_specs=[AssetCheckSpec(CHECK, asset=GRAPH_KEY, description="every archived event of the hour is the "
                                    "source of history rows or counted as giving none; no row without its source")],
    )
    def _graph(context: AssetExecutionContext, iceberg: IcebergCatalogResource) -> MaterializeResult:
        start, end = context.partition_time_window
        lo, hi = hour_window(start, end)
        catalog = iceberg.catalog()
        res = derive_window(catalog, spec, lo, hi, namespace=namespace, archive_namespace=iceberg.archive_namespace)
        archived: set[tuple[str, int, int]] = set()
        for topic in spec.mappings:
            data = read_archive(catalog, topic, lo, hi, iceberg.archive_namespace)
            if data.num_rows:
                archived |= set(zip([topic] * data.num_rows, data.column("kafka_partition").to_pylist(),
                                    data.column("kafka_offset").to_pylist(), strict=True))
        sources: set[tuple[str, int, int]] = set()
        for table in ensure_tables(catalog, spec, namespace).values():
            sources |= window_counts(table, lo, hi)[1]
        unmapped = sum(res.unmapped.values())
        ok = sources <= archived and len(sources) + unmapped == len(archived)
        check = AssetCheckResult(check_name=CHECK, passed=ok, severity=AssetCheckSeverity.ERROR,
                                 metadata={"archived_events": len(archived), "events_with_records": len(sources),
                                           "events_without_records": unmapped,
                                           "rows_without_source": len(sources - archived)})
        context.log.info(f"{context.partition_key}: {sum(res.rows.values())} history rows from "
                         f"{sum(res.events.values())} archived events")
        return MaterializeResult(metadata={"rows": MetadataValue.json(res.rows), "events": MetadataValue.json(res.events),
                                           "unmapped": MetadataValue.json(res.unmapped),
                                           "bad": MetadataValue.json(res.bad), "expired_records": res.expired},
                                 check_results=[check])

    return _graph


def build_maintenance_asset(settings: Settings, spec: GraphSpec) -> AssetsDefinition:
    namespace, days = settings.history.namespace, settings.history.retention_days

    @asset(key=MAINTENANCE_KEY, group_name=GROUP, kinds={"iceberg"}, deps=[GRAPH_KEY],
           description=f"Compact each day of every history table into one file sorted by origin; drop rows older "
                       f"than {days} days (RDG_HISTORY_RETENTION_DAYS).")
    def _maintenance(context: AssetExecutionContext, iceberg: IcebergCatalogResource) -> MaterializeResult:
        check_retention(spec, days)
        per: dict[str, dict[str, int]] = {}
        for (kind, type_), table in sorted(ensure_tables(iceberg.catalog(), spec, namespace).items()):
            dropped = drop_older_than(table, timedelta(days=days))
            r = compact(table)
            per[table_name(kind, type_)] = {"dropped": dropped, "days_compacted": r.days,
                                            "files_before": r.files_before, "files_after": r.files_after}
        context.log.info(f"history maintenance: {per}")
        return MaterializeResult(metadata={"tables": MetadataValue.json(per)})

    return _maintenance


def defs(settings: Settings, resources: PlatformResources | None = None) -> Definitions:
    """The history domain: the hourly history asset (after the archive's hour), daily maintenance."""
    res = resources if resources is not None else platform_resources(settings)
    spec = settings.load_spec()
    hourly = define_asset_job("history_hourly_job", selection=[GRAPH_KEY],
                              description="Derive the previous hour's graph history from the archive.")
    daily = define_asset_job("history_maintenance_job", selection=[MAINTENANCE_KEY])
    return Definitions(
        assets=[build_history_asset(settings, spec), build_maintenance_asset(settings, spec)],
        jobs=[hourly, daily],
        schedules=[build_schedule_from_partitioned_job(hourly, minute_of_hour=20, name="history_hourly_schedule",
                                                       default_status=default_schedule_status(settings)),
                   ScheduleDefinition(name="history_maintenance_schedule", job=daily, cron_schedule="40 3 * * *",
                                      default_status=default_schedule_status(settings))],
        resources=res.select(ICEBERG),
    )
