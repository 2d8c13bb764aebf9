"""Archive assets: every source topic, hour by hour, into ``<catalog>.archive.<table>`` (Iceberg).

One asset per source topic of the model spec (event topics and catalog side inputs), partitioned by
hour (UTC); tables are named by :func:`rdg_platform.topology.archive_table`. Materialising hour H
reads exactly the Kafka records whose timestamps fall in H (``offsets_for_times`` lower bound, see
:mod:`rdg_platform.lakehouse.kafka_window`), decodes them in bulk with the project's AvroSerde
(column-wise into Arrow), and replaces H in the table in one Iceberg commit. Re-running an hour
never duplicates; an embedded check verifies that (partition, offset) is unique in the hour and that
the row count equals what Kafka returned.
"""

from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    Definitions,
    HourlyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from rdg_platform.lakehouse.archive import archive_identifier, archive_window, read_archive
from rdg_platform.lakehouse.kafka_window import hour_window
from rdg_platform.model.spec import GraphSpec
from rdg_platform.resources import (
    CASSANDRA,
    ICEBERG,
    KAFKA,
    CassandraResource,
    IcebergCatalogResource,
    KafkaResource,
    PlatformResources,
    platform_resources,
)
from rdg_platform.settings import Settings
from rdg_platform.topology import archive_table

ARCHIVE_START = "2020-01-01-00:00"
GROUP = "archive"
CHECK_UNIQUE = "archive_hour_unique_and_complete"
JOB = "archive_hourly_job"

archive_partitions = HourlyPartitionsDefinition(start_date=ARCHIVE_START, timezone="UTC")


def archive_topics(spec: GraphSpec) -> list[str]:
    """The topics the archive keeps: every source of the model (events and catalog side inputs)."""
    return [src.topic for src in spec.sources.values()]


def archive_asset_key(topic: str) -> AssetKey:
    return AssetKey(["archive", archive_table(topic)])


def build_archive_asset(topic: str, partitions_def: HourlyPartitionsDefinition = archive_partitions) -> AssetsDefinition:
    """The hourly archive asset of one topic."""
    key = archive_asset_key(topic)

    @asset(
        key=key,
        group_name=GROUP,
        partitions_def=partitions_def,
        kinds={"kafka", "iceberg"},
        description=(f"Every record of Kafka topic `{topic}` whose timestamp falls in the partition's hour, "
                     f"decoded from Avro, in Iceberg table `{archive_identifier(topic)}` (partitioned by "
                     "hour of kafka_ts, with kafka_topic/partition/offset/ts/key and the event fields). "
                     "Re-materialising an hour replaces it."),
        check_specs=[AssetCheckSpec(CHECK_UNIQUE, asset=key,
                                    description="(partition, offset) unique within the hour, rows == Kafka's")],
        metadata={"topic": topic, "table": archive_identifier(topic)},
    )
    def _archive(context: AssetExecutionContext, kafka: KafkaResource,
                 iceberg: IcebergCatalogResource, cassandra: CassandraResource) -> MaterializeResult:
        start, end = context.partition_time_window
        start_ms, end_ms = hour_window(start, end)
        source = cassandra.spec().sources[topic]
        catalog = iceberg.catalog()
        with kafka.serde() as serde:
            res, window = archive_window(catalog, topic, source.schema, serde, kafka.bootstrap_servers, start_ms,
                                         end_ms, timeout_s=kafka.read_timeout_s,
                                         max_lateness_ms=kafka.max_lateness_ms,
                                         consumer_config=kafka.security_config(), namespace=iceberg.archive_namespace)
        context.log.info(f"{topic} {context.partition_key}: {res.rows} rows archived, "
                         f"{res.undecodable_total} undecodable skipped, scanned {res.scanned} records")
        check = _check_hour(catalog, topic, start_ms, end_ms, window.records - res.undecodable_total,
                            iceberg.archive_namespace)
        return MaterializeResult(
            metadata={
                "rows": res.rows,
                "kafka_records_in_hour": window.records,
                "undecodable": res.undecodable_total,
                "undecodable_by_reason": MetadataValue.json(res.undecodable),
                "offset_ranges": MetadataValue.json(res.offset_ranges),
                "bytes_read": res.bytes_read,
                "bytes_written": res.bytes_written,
                "files_written": res.files_written,
                "records_scanned": res.scanned,
                "added_columns": MetadataValue.json(res.added_columns),
                "snapshot_id": str(res.snapshot_id),
                "table": res.table,
            },
            check_results=[check],
        )

    return _archive


def _check_hour(catalog: Any, topic: str, start_ms: int, end_ms: int, expected: int, namespace: str) -> AssetCheckResult:
    data = read_archive(catalog, topic, start_ms, end_ms, namespace)
    n = data.num_rows
    uniq = len(set(zip(data.column("kafka_partition").to_pylist(), data.column("kafka_offset").to_pylist(),
                       strict=True))) if n else 0
    ok = uniq == n and n == expected
    return AssetCheckResult(check_name=CHECK_UNIQUE, passed=ok, severity=AssetCheckSeverity.ERROR,
                            metadata={"rows": n, "unique_offsets": uniq, "expected": expected})


def build_archive_assets(topics: Sequence[str],
                         partitions_def: HourlyPartitionsDefinition = archive_partitions) -> list[AssetsDefinition]:
    return [build_archive_asset(t, partitions_def) for t in topics]


def defs(settings: Settings, resources: PlatformResources | None = None) -> Definitions:
    """The archive domain: one hourly asset per source topic of the spec, the hourly job and its
    schedule (a few minutes after each hour closes, archiving that hour)."""
    res = resources if resources is not None else platform_resources(settings)
    job = define_asset_job(JOB, selection=AssetSelection.groups(GROUP),
                           description="Archive the previous hour of every source topic.")
    return Definitions(
        assets=build_archive_assets(archive_topics(settings.load_spec())),
        jobs=[job],
        schedules=[build_schedule_from_partitioned_job(job, minute_of_hour=5, name="archive_hourly_schedule")],
        resources=res.select(KAFKA, ICEBERG, CASSANDRA),
    )
