"""Spark rebuild of one graph namespace from the archive, blue/green.

Run ``rebuild_namespace_job`` from the launchpad with e.g. ``{"ops": {"rebuild_namespace_op":
{"config": {"namespace": "edge.plays"}}}}``. The job computes the namespace from the whole archive (or
``start``..``end``), writes it into ``<table>_v<N>``, catches up from Kafka (the records after the
last archived hour), validates it against the live version while traffic goes on (row by row:
every row no write newer than ``now - live_lag_s`` touched on either side must be equal; newer rows
are in flight and carried by the replay) and flips ``<keyspace>.namespace_versions`` to it; the old
tables stay for rollback. ``catch_up: false`` (or an ``end``) rebuilds from the archive alone.
"""

from datetime import UTC, datetime
from typing import Any

from dagster import (
    Config,
    Definitions,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    Output,
    job,
    op,
)
from pydantic import Field

from rdg_platform.lakehouse.backfill import build_lookup
from rdg_platform.lakehouse.spark import CatchUp, rebuild_namespace
from rdg_platform.resources import (
    CASSANDRA,
    ICEBERG,
    KAFKA,
    SPARK,
    CassandraResource,
    IcebergCatalogResource,
    KafkaResource,
    PlatformResources,
    SparkResource,
    platform_resources,
)
from rdg_platform.settings import Settings


class RebuildConfig(Config):  # type: ignore[misc]
    namespace: str = Field(default="edge.plays", description="node.<type> or edge.<type>")
    start: str | None = Field(default=None, description="ISO time; default: the whole archive")
    end: str | None = Field(default=None, description="ISO time (exclusive); default: the whole archive")
    switch: bool = Field(default=True, description="flip the namespace to the new version once validated")
    catch_up: bool = Field(default=True, description="replay Kafka after the archive and validate against live "
                                                     "(ignored with an end: a past range is archive-only)")
    validate_timeout_s: float = Field(default=300.0, description="how long the new version may take to agree "
                                                                 "with the live one before the rebuild fails")
    live_lag_s: float = Field(default=300.0, gt=0, description="how far the live version may lag the source "
                              "topics: at least RDG_STREAMING_DEDUP_MAX_WINDOW_S (default 240 s) plus the "
                              "sinks' commit interval and lag; rows written more recently are not compared. "
                              "The launchpad pre-fills it from the streaming settings")


def _ms(iso: str | None) -> int | None:
    if not iso:
        return None
    dt = datetime.fromisoformat(iso)
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


@op(description="Rebuild one namespace from the Iceberg archive with Spark, validate, switch (blue/green).")
def rebuild_namespace_op(context: OpExecutionContext, config: RebuildConfig, spark: SparkResource,
                         iceberg: IcebergCatalogResource, cassandra: CassandraResource,
                         kafka: KafkaResource) -> Output[dict[str, Any]]:
    spec = cassandra.spec()
    if config.namespace not in spec.namespaces:
        raise ValueError(f"unknown namespace {config.namespace!r} (known: {sorted(spec.namespaces)})")
    cat_cfg = iceberg.config()
    end_ms = _ms(config.end)
    lookup = build_lookup(cat_cfg.load(), spec, end_ms)
    context.log.info(f"side inputs: {lookup.size()}; starting Spark ({spark.master})")
    session = spark.session(cat_cfg, cassandra)
    catchup = None
    if config.catch_up and end_ms is None:
        catchup = CatchUp(kafka.kafka_settings(), kafka.registry_settings(),
                          validate_timeout_s=config.validate_timeout_s, live_lag_s=config.live_lag_s,
                          settle_s=(cassandra.namespace_refresh_s or 0.0) + 2.0)
    res = rebuild_namespace(session, cat_cfg, spec, config.namespace, lookup, start_ms=_ms(config.start),
                            end_ms=end_ms, switch=config.switch, cassandra=cassandra.cassandra_settings(),
                            catchup=catchup, erasure=cassandra.erasure_settings(),
                            log=context.log.info)
    summary: dict[str, Any] = {"namespace": res.namespace, "version": res.version, "tables": list(res.tables),
                               "keys": res.keys, "switched": res.switched,
                               "checksums": {t: list(v) for t, v in res.checksums.items()},
                               "live_checksums": {t: list(v) for t, v in res.live_checksums.items()},
                               "catchup_records": res.catchup_records,
                               "settled_rows": res.settled_rows, "in_flight_rows": res.in_flight_rows,
                               "validation_cut_us": res.validation_cut_us}
    return Output(summary, metadata={
        "version": res.version, "keys": res.keys, "switched": res.switched,
        "catchup_from": MetadataValue.json({t: {str(p): o for p, o in v.items()} for t, v in res.catchup_from.items()}),
        "catchup_records": res.catchup_records, "catchup_rounds": res.catchup_rounds,
        "settle_records": res.settle_records, "validation_rounds": res.validation_rounds,
        "mismatch_rounds": res.mismatch_rounds,
        "settled_rows": MetadataValue.json(res.settled_rows),
        "in_flight_rows": MetadataValue.json(res.in_flight_rows),
        "live_checksums": MetadataValue.json(summary["live_checksums"]),
        "rows_read_back": MetadataValue.json(res.rows_read_back),
        "checksums": MetadataValue.json(summary["checksums"]),
        "timings_s": MetadataValue.json({k: round(v, 2) for k, v in res.timings.items()}),
        "keys_per_s": round(res.keys / res.seconds, 1) if res.seconds else 0.0,
    })


def live_lag_default(settings: Settings) -> float:
    """How far the live namespace may lag its source topics, from the streaming settings: the largest
    dedup window (a busy key's trailing emission), the sinks' commit interval, and 60 s of margin."""
    s = settings.streaming
    return s.dedup_window_cap_s + s.sink_commit_s + 60.0


def build_rebuild_job(live_lag_s: float = 300.0) -> JobDefinition:
    """The rebuild job, its launchpad config pre-filled with ``live_lag_s`` (see :func:`live_lag_default`)."""

    @job(name="rebuild_namespace_job", tags={"domain": "rebuild"},
         config={"ops": {"rebuild_namespace_op": {"config": {"live_lag_s": live_lag_s}}}},
         description="Spark rebuild of one graph namespace from the archive into a new table version (blue/green).")
    def rebuild_namespace_job() -> None:
        rebuild_namespace_op()

    return rebuild_namespace_job


rebuild_namespace_job = build_rebuild_job()


def defs(settings: Settings, resources: PlatformResources | None = None) -> Definitions:
    """The rebuild domain: the launchpad job (no assets: a rebuild is an operation, not data)."""
    res = resources if resources is not None else platform_resources(settings)
    return Definitions(jobs=[build_rebuild_job(live_lag_default(settings))],
                       resources=res.select(SPARK, ICEBERG, CASSANDRA, KAFKA))
