"""Backfill: replay archived hours through the mapping into the graph namespaces.

Launch from the Dagster UI by selecting ``graph/backfill`` and a range of hourly partitions: the
single-run backfill policy turns the whole range into ONE run, which replays it hour by hour
(progress in the run log and in the materialization metadata). Writes are LWW by event time, so a
backfill may overlap live traffic or an earlier backfill safely.
"""

from collections.abc import Sequence

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    Definitions,
    HourlyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from rdg_platform.assets.archive import archive_asset_key, archive_partitions_def, archive_topics
from rdg_platform.lakehouse.backfill import replay
from rdg_platform.lakehouse.kafka_window import hour_window
from rdg_platform.resources import (
    CASSANDRA,
    ICEBERG,
    CassandraResource,
    IcebergCatalogResource,
    PlatformResources,
    platform_resources,
)
from rdg_platform.settings import Settings

BACKFILL_KEY = AssetKey(["graph", "backfill"])


def build_backfill_asset(topics: Sequence[str], partitions_def: HourlyPartitionsDefinition) -> AssetsDefinition:
    """The backfill asset, downstream of the archive assets of ``topics`` (and on their partitions)."""
    return asset(
        key=BACKFILL_KEY,
        group_name="backfill",
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[archive_asset_key(t) for t in topics],
        kinds={"iceberg", "cassandra"},
        description=("The graph namespaces as replayed from the Iceberg archive for the selected hours: the "
                     "archive rows go through the same mapping as the streaming processors (side inputs from "
                     "the catalog archive), are compacted per node/edge with per-property last-write-wins "
                     "and written with the event time as Cassandra write time."),
    )(graph_backfill)


def graph_backfill(context: AssetExecutionContext, iceberg: IcebergCatalogResource,
                   cassandra: CassandraResource) -> MaterializeResult:
    start, end = context.partition_time_window
    start_ms, end_ms = hour_window(start, end)
    spec = cassandra.spec()
    store = cassandra.graph_store()
    try:
        store.ensure_schema()
        context.log.info(f"backfilling {start.isoformat()} .. {end.isoformat()} "
                         f"({len(context.partition_keys)} hours) into keyspace(s) "
                         f"{sorted({ns.keyspace for ns in spec.namespaces.values()})}")
        res = replay(iceberg.catalog(), spec, start_ms, end_ms, store.write, progress=context.log.info)
    finally:
        store.close()
    return MaterializeResult(metadata={
        "hours": len(context.partition_keys),
        "events": res.events,
        "graph_records": res.records,
        "writes": res.written,
        "bad_events": MetadataValue.json(res.bad_events),
        "events_per_topic": MetadataValue.json(res.per_topic),
        "seconds": round(res.seconds, 2),
        "events_per_s": round(res.events / res.seconds, 1) if res.seconds else 0.0,
    })


def defs(settings: Settings, resources: PlatformResources | None = None) -> Definitions:
    """The backfill domain: one asset replaying the archive of every source topic into the graph."""
    res = resources if resources is not None else platform_resources(settings)
    spec = settings.load_spec()
    return Definitions(assets=[build_backfill_asset(archive_topics(spec), archive_partitions_def(settings, spec))],
                       resources=res.select(ICEBERG, CASSANDRA))
