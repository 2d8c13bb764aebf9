"""Maintenance (TTL-compaction) of the lakehouse and of the graph namespaces, as daily assets.

Iceberg: expire snapshots, compact small files, drop archive hours past the retention, then delete
the orphan files expiry leaves behind (older than a safety age; pyiceberg 0.12 has no such action).
Cassandra: make every namespace's tables (the active blue/green version) carry the spec's
``default_time_to_live`` and compaction (TWCS for edges with a TTL), idempotently; a check reports
TTL/compaction drift and tombstones per read.
"""

from datetime import timedelta
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    Config,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    asset_check,
    define_asset_job,
)
from pydantic import Field
from pyiceberg.exceptions import NoSuchTableError

from rdg_platform.assets.archive import SOURCE_TOPICS, archive_asset_key
from rdg_platform.lakehouse import maintenance as m
from rdg_platform.lakehouse.archive import archive_identifier
from rdg_platform.lakehouse.versions import active_namespace
from rdg_platform.resources import CassandraResource, IcebergCatalogResource

GROUP = "maintenance"
CHECK_TTL_HEALTH = "cassandra_ttl_tombstone_health"
ARCHIVE_DEPS = [archive_asset_key(t) for t in SOURCE_TOPICS]


def _tables(iceberg: IcebergCatalogResource) -> list[tuple[str, Any]]:
    cat = iceberg.catalog()
    out = []
    for t in SOURCE_TOPICS:
        try:
            out.append((t, cat.load_table(archive_identifier(t, iceberg.archive_namespace))))
        except NoSuchTableError:
            continue
    return out


@asset(key=AssetKey(["maintenance", "iceberg_compact_files"]), group_name=GROUP, deps=ARCHIVE_DEPS,
       kinds={"iceberg"},
       description="Rewrites every archive hour that has several small data files into one file "
                   "(one atomic overwrite per hour; the rows are unchanged).")
def iceberg_compact_files(context: AssetExecutionContext, iceberg: IcebergCatalogResource) -> MaterializeResult:
    per_table = {}
    for topic, table in _tables(iceberg):
        r = m.compact_small_files(table)
        per_table[topic] = {"hours_rewritten": r.partitions, "files_before": r.files_before,
                            "files_after": r.files_after, "rows": r.rows}
        context.log.info(f"{topic}: {r.files_before} -> {r.files_after} files ({r.partitions} hours rewritten)")
    return MaterializeResult(metadata={"tables": MetadataValue.json(per_table)})


@asset(key=AssetKey(["maintenance", "iceberg_retention"]), group_name=GROUP, deps=ARCHIVE_DEPS,
       kinds={"iceberg"},
       description="Drops archive hours older than the catalog resource's retention_days.")
def iceberg_retention(context: AssetExecutionContext, iceberg: IcebergCatalogResource) -> MaterializeResult:
    dropped = {}
    for topic, table in _tables(iceberg):
        dropped[topic] = m.drop_older_than(table, timedelta(days=iceberg.retention_days))
        if dropped[topic]:
            context.log.info(f"{topic}: dropped {dropped[topic]} rows older than {iceberg.retention_days} days")
    return MaterializeResult(metadata={"retention_days": iceberg.retention_days,
                                       "rows_dropped": MetadataValue.json(dropped)})


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
            session = kv.registry.session(ns.cluster)
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
            session = kv.registry.session(ns.cluster)
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


maintenance_job = define_asset_job("lakehouse_maintenance_job", selection=AssetSelection.groups(GROUP),
                                   description="Daily Iceberg and Cassandra maintenance.")
assets = [iceberg_compact_files, iceberg_retention, iceberg_expire_snapshots, iceberg_remove_orphan_files,
          cassandra_namespace_settings]
asset_checks = [cassandra_ttl_tombstone_health]
jobs = [maintenance_job]
schedules = [ScheduleDefinition(name="lakehouse_maintenance_daily", job=maintenance_job, cron_schedule="30 3 * * *",
                                execution_timezone="UTC")]
sensors: list[Any] = []
