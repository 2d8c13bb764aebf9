"""Maintenance (TTL-compaction) of the lakehouse and of the graph namespaces, as daily assets.

Iceberg: expire snapshots, compact small files, drop archive hours past the retention, then delete
the orphan files expiry leaves behind (older than a safety age; pyiceberg 0.12 has no such action).
Cassandra: make every namespace's tables (the active blue/green version) carry the spec's
``default_time_to_live`` and compaction (TWCS for edges with a TTL), idempotently; a check reports
TTL/compaction drift and tombstones per read.
"""

from collections.abc import Sequence
from datetime import timedelta

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    Config,
    Definitions,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    asset_check,
    define_asset_job,
)
from pydantic import Field
from pyiceberg.exceptions import NoSuchNamespaceError
from pyiceberg.table import Table

from rdg_platform.assets.archive import archive_asset_key, archive_topics, default_schedule_status
from rdg_platform.kv.versions import active_namespace
from rdg_platform.lakehouse import maintenance as m
from rdg_platform.lakehouse.archive import SOURCE_TOPIC_PROPERTY
from rdg_platform.resources import (
    CASSANDRA,
    ICEBERG,
    CassandraResource,
    IcebergCatalogResource,
    PlatformResources,
    platform_resources,
)
from rdg_platform.settings import Settings

GROUP = "maintenance"
CHECK_TTL_HEALTH = "cassandra_ttl_tombstone_health"
JOB = "lakehouse_maintenance_job"


def _tables(iceberg: IcebergCatalogResource) -> list[tuple[str, Table]]:
    """Every table of the archive namespace, as (source topic, table): what exists is maintained,
    including the history of a topic the model no longer has."""
    cat = iceberg.catalog()
    try:
        idents = cat.list_tables(iceberg.archive_namespace)
    except NoSuchNamespaceError:  # nothing archived yet
        return []
    out = []
    for ident in idents:
        table = cat.load_table(ident)
        out.append((table.properties.get(SOURCE_TOPIC_PROPERTY, ident[-1]), table))
    return sorted(out, key=lambda tt: tt[0])


def iceberg_compact_files(context: AssetExecutionContext, iceberg: IcebergCatalogResource) -> MaterializeResult:
    per_table = {}
    for topic, table in _tables(iceberg):
        r = m.compact_small_files(table)
        per_table[topic] = {"hours_rewritten": r.partitions, "files_before": r.files_before,
                            "files_after": r.files_after, "rows": r.rows}
        context.log.info(f"{topic}: {r.files_before} -> {r.files_after} files ({r.partitions} hours rewritten)")
    return MaterializeResult(metadata={"tables": MetadataValue.json(per_table)})


def iceberg_retention(context: AssetExecutionContext, iceberg: IcebergCatalogResource) -> MaterializeResult:
    days = iceberg.retention_days
    if days is None:
        context.log.info("archive retention: forever (the spec's archive.retention_days is null); nothing dropped")
        return MaterializeResult(metadata={"retention_days": "forever", "rows_dropped": MetadataValue.json({})})
    dropped = {}
    for topic, table in _tables(iceberg):
        dropped[topic] = m.drop_older_than(table, timedelta(days=days))
        if dropped[topic]:
            context.log.info(f"{topic}: dropped {dropped[topic]} rows older than {days} days")
    return MaterializeResult(metadata={"retention_days": days, "rows_dropped": MetadataValue.json(dropped)})


def build_archive_maintenance(topics: Sequence[str]) -> list[AssetsDefinition]:
    """Compaction and retention, downstream of the archive assets of ``topics``."""
    deps = [archive_asset_key(t) for t in topics]
    return [
        asset(key=AssetKey(["maintenance", "iceberg_compact_files"]), group_name=GROUP, deps=deps,
              kinds={"iceberg"},
              description="Rewrites every archive hour that has several small data files into one file "
                          "(one atomic overwrite per hour; the rows are unchanged).")(iceberg_compact_files),
        asset(key=AssetKey(["maintenance", "iceberg_retention"]), group_name=GROUP, deps=deps, kinds={"iceberg"},
              description="Drops archive hours older than the archive retention (the spec's "
                          "archive.retention_days).")(iceberg_retention),
    ]


@asset(key=AssetKey(["maintenance", "iceberg_expire_snapshots"]), group_name=GROUP,
       deps=[AssetKey(["maintenance", "iceberg_compact_files"]), AssetKey(["maintenance", "iceberg_retention"])],
       kinds={"iceberg"},
       description="Expires archive snapshots older than snapshot_min_age_minutes, keeping the newest "
                   "snapshots_to_keep.")
def iceberg_expire_snapshots(context: AssetExecutionContext, iceberg: IcebergCatalogResource) -> MaterializeResult:
    expired = {}
    for topic, table in _tables(iceberg):
        expired[topic] = m.expire_snapshots(table, keep_last=iceberg.snapshots_to_keep,
                                             older_than=timedelta(minutes=iceberg.snapshot_min_age_minutes))
        table.refresh()
        context.log.info(f"{topic}: expired {expired[topic]} snapshots, {len(table.snapshots())} left")
    return MaterializeResult(metadata={"expired": MetadataValue.json(expired)})


class OrphanFilesConfig(Config):  # type: ignore[misc]
    """Run config of the orphan-file cleanup."""

    min_age_hours: float = Field(
        default=72.0, description="only files older than this are deleted: a write in flight (files written, "
                                  "commit pending) must never lose its files")
    dry_run: bool = Field(default=False, description="report what would be deleted, delete nothing")


@asset(key=AssetKey(["maintenance", "iceberg_remove_orphan_files"]), group_name=GROUP,
       deps=[AssetKey(["maintenance", "iceberg_expire_snapshots"])], kinds={"iceberg"},
       description="Deletes files under each archive table's location that no remaining snapshot or metadata "
                   "file references (data files of expired snapshots, superseded metadata, leftovers of failed "
                   "writes), if older than min_age_hours.")
def iceberg_remove_orphan_files(context: AssetExecutionContext, config: OrphanFilesConfig,
                                iceberg: IcebergCatalogResource) -> MaterializeResult:
    per_table = {}
    total = 0
    for topic, table in _tables(iceberg):
        r = m.remove_orphan_files(table, timedelta(hours=config.min_age_hours), dry_run=config.dry_run)
        total += len(r.deleted)
        per_table[topic] = {"files_scanned": r.files_scanned, "referenced": r.referenced,
                            "orphans_deleted": len(r.deleted), "bytes_deleted": r.bytes_deleted,
                            "kept_too_recent": r.kept_too_recent}
        context.log.info(f"{topic}: {'would delete' if config.dry_run else 'deleted'} {len(r.deleted)} orphan "
                         f"files ({r.bytes_deleted} bytes); {r.kept_too_recent} unreferenced but too recent")
    return MaterializeResult(metadata={"tables": MetadataValue.json(per_table), "orphans_deleted": total,
                                       "dry_run": config.dry_run, "min_age_hours": config.min_age_hours})


CASSANDRA_SETTINGS_KEY = AssetKey(["maintenance", "cassandra_namespace_settings"])


@asset(key=CASSANDRA_SETTINGS_KEY, group_name=GROUP, kinds={"cassandra"},
       description="Each namespace table (its active version) carries the spec's default_time_to_live and "
                   "compaction (TimeWindowCompactionStrategy for edges with a TTL). ALTERs only what differs.")
def cassandra_namespace_settings(context: AssetExecutionContext, cassandra: CassandraResource) -> MaterializeResult:
    spec = cassandra.spec()
    kv = cassandra.kv()
    changed: dict[str, list[str]] = {}
    missing: list[str] = []
    try:
        for ns in spec.namespaces.values():
            session = kv.cluster_session(ns.cluster)
            for ch in m.apply_namespace_settings(session, active_namespace(session, ns)):
                if ch.missing:
                    missing.append(ch.table)
                elif ch.changed:
                    changed[ch.table] = ch.changed
                    context.log.info(f"{ch.table}: {', '.join(ch.changed)}")
    finally:
        kv.close()
    return MaterializeResult(metadata={"tables_changed": MetadataValue.json(changed),
                                       "tables_missing": MetadataValue.json(missing),
                                       "namespaces": len(spec.namespaces)})


@asset_check(asset=CASSANDRA_SETTINGS_KEY, name=CHECK_TTL_HEALTH,
             description="TTL and compaction of every namespace table match the spec; tombstones per read "
                         "(system_views.tombstones_per_read p99) stay under 1000.")
def cassandra_ttl_tombstone_health(context: AssetCheckExecutionContext, cassandra: CassandraResource) -> AssetCheckResult:
    spec = cassandra.spec()
    kv = cassandra.kv()
    report = {}
    problems = []
    try:
        for ns in spec.namespaces.values():
            session = kv.cluster_session(ns.cluster)
            active = active_namespace(session, ns)
            for t in active.tables:
                h = m.table_health(session, active, t)
                report[h.table] = {"ttl": h.default_time_to_live, "expected_ttl": h.expected_ttl,
                                   "compaction": h.compaction, "tombstones_p99": h.tombstones_p99,
                                   "tombstones_max": h.tombstones_max}
                problems += [f"{h.table}: {p}" for p in h.problems]
    finally:
        kv.close()
    return AssetCheckResult(passed=not problems, severity=AssetCheckSeverity.WARN,
                            metadata={"tables": MetadataValue.json(report), "problems": MetadataValue.json(problems)})


def build_maintenance_assets(topics: Sequence[str]) -> list[AssetsDefinition]:
    """Every maintenance asset, in run order (the archive's compaction and retention first)."""
    return [*build_archive_maintenance(topics), iceberg_expire_snapshots, iceberg_remove_orphan_files,
            cassandra_namespace_settings]


def defs(settings: Settings, resources: PlatformResources | None = None) -> Definitions:
    """The maintenance domain: Iceberg and Cassandra maintenance assets, their check, a daily job."""
    res = resources if resources is not None else platform_resources(settings)
    job = define_asset_job(JOB, selection=AssetSelection.groups(GROUP),
                           description="Daily Iceberg and Cassandra maintenance.")
    return Definitions(
        assets=build_maintenance_assets(archive_topics(settings.load_spec())),
        asset_checks=[cassandra_ttl_tombstone_health],
        jobs=[job],
        schedules=[ScheduleDefinition(name="lakehouse_maintenance_daily", job=job, cron_schedule="30 3 * * *",
                                      execution_timezone="UTC", default_status=default_schedule_status(settings))],
        resources=res.select(ICEBERG, CASSANDRA),
    )
