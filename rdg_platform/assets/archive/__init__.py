"""Archive assets: every source topic, hour by hour, into ``<catalog>.archive.<table>`` (Iceberg).

One asset per source topic of the model spec (event topics and catalog side inputs), partitioned by
hour (UTC); tables are named by :func:`rdg_platform.topology.archive_table`. Materialising hour H
reads exactly the Kafka records whose timestamps fall in H (``offsets_for_times`` lower bound, see
:mod:`rdg_platform.lakehouse.kafka_window`), decodes them in bulk with the project's AvroSerde
(column-wise into Arrow), and replaces H in the table in one Iceberg commit. Re-running an hour
never duplicates, and never replaces an hour whose records Kafka no longer retains (the run fails
naming the hour, the retention and the offsets; see :mod:`rdg_platform.lakehouse.archive`). An
embedded check verifies that (partition, offset) is unique in the hour, that the row count equals
what Kafka returned, and that it is not below what the archive held for the hour before the run.

The hourly partitions start at the archive's start (:func:`archive_start`): ``RDG_DAGSTER_ARCHIVE_START``,
else the start of the archive retention on the day the platform was first set up (remembered in the
state directory), so the UI offers the hours the archive can hold, not years of empty ones. The
schedule, like every schedule and sensor of normal operation, starts RUNNING
(``RDG_DAGSTER_SCHEDULES_RUNNING``, :func:`default_schedule_status`).
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
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
from rdg_platform.model.spec import ArchivePolicy, GraphSpec
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

GROUP = "archive"
CHECK_UNIQUE = "archive_hour_unique_and_complete"
JOB = "archive_hourly_job"
PARTITION_FORMAT = "%Y-%m-%d-%H:00"
START_FILE = ("dagster", "archive_start")  # under the state dir: the start chosen on first setup


def default_schedule_status(settings: Settings) -> DefaultScheduleStatus:
    """RUNNING unless ``RDG_DAGSTER_SCHEDULES_RUNNING=0``: what a new Dagster instance starts with."""
    return DefaultScheduleStatus.RUNNING if settings.dagster.schedules_running else DefaultScheduleStatus.STOPPED


def default_sensor_status(settings: Settings) -> DefaultSensorStatus:
    """The sensors' counterpart of :func:`default_schedule_status` (the same setting)."""
    return DefaultSensorStatus.RUNNING if settings.dagster.schedules_running else DefaultSensorStatus.STOPPED


def _parse_start(text: str) -> datetime:
    fmt = PARTITION_FORMAT if len(text) > 10 else "%Y-%m-%d"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def archive_start(settings: Settings, policy: ArchivePolicy, now: datetime | None = None) -> datetime:
    """The first hourly archive partition.

    ``RDG_DAGSTER_ARCHIVE_START`` when set; else the value remembered in ``<state_dir>/dagster/archive_start``;
    else (first setup) the start of the archive retention, now minus ``retention_days`` (today when the
    archive keeps everything), at midnight UTC, written to that file when the state dir exists so later
    loads keep the same partitions. Without a writable state dir (not set up yet, a read-only image) it
    is recomputed on each load; production sets the setting.
    """
    if settings.dagster.archive_start:
        return _parse_start(settings.dagster.archive_start)
    path = settings.state_dir.joinpath(*START_FILE)
    try:
        return _parse_start(path.read_text().strip())
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise ValueError(f"{path}: not a date ({exc}); delete it or set RDG_DAGSTER_ARCHIVE_START") from None
    now = now or datetime.now(tz=UTC)
    days = policy.retention_days or 0
    start = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    if settings.state_dir.is_dir():  # set up (the services made it): remember; else nothing to remember yet
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(start.strftime(PARTITION_FORMAT) + "\n")
        except OSError:
            pass
    return start


def archive_partitions_def(settings: Settings, spec: GraphSpec | None = None) -> HourlyPartitionsDefinition:
    """Hourly (UTC) partitions from :func:`archive_start`; the archive and the backfill share them."""
    policy = (spec or settings.load_spec()).archive
    return HourlyPartitionsDefinition(start_date=archive_start(settings, policy).strftime(PARTITION_FORMAT),
                                      timezone="UTC")


def archive_topics(spec: GraphSpec) -> list[str]:
    """The topics the archive keeps: every source of the model (events and catalog side inputs)."""
    return [src.topic for src in spec.sources.values()]


def archive_asset_key(topic: str) -> AssetKey:
    return AssetKey(["archive", archive_table(topic)])


def build_archive_asset(topic: str, partitions_def: HourlyPartitionsDefinition) -> AssetsDefinition:
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
                                    description="(partition, offset) unique within the hour, rows == Kafka's, "
                                                "rows >= what the archive held for the hour before")],
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
                            res.previous_rows, iceberg.archive_namespace)
        return MaterializeResult(
            metadata={
                "rows": res.rows,
                "previous_rows": res.previous_rows if res.previous_rows is not None else 0,
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


def _check_hour(catalog: Any, topic: str, start_ms: int, end_ms: int, expected: int, previous: int | None,
                namespace: str) -> AssetCheckResult:
    """Rows unique by (partition, offset), equal to what Kafka returned, and not fewer than the archive
    held before this run (a read that found less than the archive had is a loss, not a correction)."""
    data = read_archive(catalog, topic, start_ms, end_ms, namespace)
    n = data.num_rows
    uniq = len(set(zip(data.column("kafka_partition").to_pylist(), data.column("kafka_offset").to_pylist(),
                       strict=True))) if n else 0
    ok = uniq == n and n == expected and (previous is None or n >= previous)
    return AssetCheckResult(check_name=CHECK_UNIQUE, passed=ok, severity=AssetCheckSeverity.ERROR,
                            metadata={"rows": n, "unique_offsets": uniq, "expected": expected,
                                      "previous_rows": previous if previous is not None else 0})


def build_archive_assets(topics: Sequence[str], partitions_def: HourlyPartitionsDefinition) -> list[AssetsDefinition]:
    return [build_archive_asset(t, partitions_def) for t in topics]


def defs(settings: Settings, resources: PlatformResources | None = None) -> Definitions:
    """The archive domain: one hourly asset per source topic of the spec, the hourly job and its
    schedule (a few minutes after each hour closes, archiving that hour)."""
    res = resources if resources is not None else platform_resources(settings)
    spec = settings.load_spec()
    job = define_asset_job(JOB, selection=AssetSelection.groups(GROUP),
                           description="Archive the previous hour of every source topic.")
    return Definitions(
        assets=build_archive_assets(archive_topics(spec), archive_partitions_def(settings, spec)),
        jobs=[job],
        schedules=[build_schedule_from_partitioned_job(job, minute_of_hour=5, name="archive_hourly_schedule",
                                                       default_status=default_schedule_status(settings))],
        resources=res.select(KAFKA, ICEBERG, CASSANDRA),
    )
