"""Great Expectations suites as Dagster asset checks, run on a schedule and visible per asset.

One ``@multi_asset_check`` per archive table (checks ``gx_schema``, ``gx_ids_not_null``,
``gx_event_time_in_window``, ``gx_event_id_unique``) reads the table once with pyiceberg and runs
the archive suite; one per graph namespace (``gx_ttl``, ``gx_freshness`` and, for edges,
``gx_orphan_edges``) samples the namespace through the KV layer once and runs the graph suite. Each
GX rule becomes one check result, with the expectations' observed values as metadata, so the UI
shows exactly which rule failed on which asset.
"""


import time
from collections.abc import Iterable, Sequence
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    ConfigurableResource,
    MetadataValue,
    multi_asset_check,
)
from pydantic import Field

from rdg_platform.assets.quality.suites import (
    ARCHIVE_RULES,
    RULE_EVENT_ID_UNIQUE,
    RULE_EVENT_TIME_IN_WINDOW,
    RULE_FRESHNESS,
    RULE_IDS_NOT_NULL,
    RULE_ORPHAN_EDGES,
    RULE_SCHEMA,
    RULE_TTL,
    ArchiveThresholds,
    GraphThresholds,
    SuiteResult,
)
from rdg_platform.resources import CassandraResource, IcebergCatalogResource
from rdg_platform.topology import archive_table

# Check names are constants (one per GX rule).
CHECK_SCHEMA = f"gx_{RULE_SCHEMA}"
CHECK_IDS_NOT_NULL = f"gx_{RULE_IDS_NOT_NULL}"
CHECK_EVENT_TIME_IN_WINDOW = f"gx_{RULE_EVENT_TIME_IN_WINDOW}"
CHECK_EVENT_ID_UNIQUE = f"gx_{RULE_EVENT_ID_UNIQUE}"
CHECK_ORPHAN_EDGES = f"gx_{RULE_ORPHAN_EDGES}"
CHECK_TTL = f"gx_{RULE_TTL}"
CHECK_FRESHNESS = f"gx_{RULE_FRESHNESS}"

_DESCRIPTIONS = {
    RULE_SCHEMA: "Every Kafka coordinate column and every Avro field of the topic is a column of the table.",
    RULE_IDS_NOT_NULL: "Non-nullable *_id fields of the Avro schema are never null.",
    RULE_EVENT_TIME_IN_WINDOW: "event_time lies in the hour partition of its kafka_ts (allowing lateness/skew).",
    RULE_EVENT_ID_UNIQUE: "event_id is unique (within the tolerated duplicate rate).",
    RULE_ORPHAN_EDGES: "Sampled edges whose src or dst node is missing stay under the tolerated rate.",
    RULE_TTL: "Table default TTL equals the spec's; sampled items' remaining TTL is within it (none if 0).",
    RULE_FRESHNESS: "The newest sampled updated_at is younger than the freshness limit.",
}
# Severity when a rule fails: data that is wrong is an ERROR; data that is late or slightly orphaned
# (nodes and edges travel on different topics) is a WARN.
_SEVERITY = {RULE_FRESHNESS: AssetCheckSeverity.WARN, RULE_ORPHAN_EDGES: AssetCheckSeverity.WARN}


class QualityResource(ConfigurableResource):  # type: ignore[misc]
    """Thresholds and sample sizes of the quality suites (per environment in definitions.py)."""

    lookback_hours: int = Field(default=24, description="archive rows of the last N hours (0 = whole table)")
    max_rows: int = Field(default=200_000, description="archive rows read per table at most")
    lateness_s: int = 3600
    skew_s: int = 300
    duplicate_event_id_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    sample_size: int = Field(default=2000, description="items sampled per graph namespace")
    orphan_edge_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    freshness_max_lag_s: int = 24 * 3600

    def archive_thresholds(self) -> ArchiveThresholds:
        return ArchiveThresholds(self.lateness_s, self.skew_s, self.duplicate_event_id_rate)

    def graph_thresholds(self) -> GraphThresholds:
        return GraphThresholds(self.orphan_edge_rate, self.freshness_max_lag_s)


def _results(result: SuiteResult, rules: Sequence[str], key: AssetKey) -> Iterable[AssetCheckResult]:
    for rule in rules:
        rr = result.rules[rule]
        yield AssetCheckResult(
            asset_key=key, check_name=f"gx_{rule}", passed=rr.success,
            severity=_SEVERITY.get(rule, AssetCheckSeverity.ERROR),
            metadata={"rows_validated": result.rows, "unexpected": rr.unexpected_count,
                      "gx_suite": result.suite, "expectations": MetadataValue.json(rr.expectations)})


def _failed_all(rules: Sequence[str], key: AssetKey, reason: str) -> Iterable[AssetCheckResult]:
    for rule in rules:
        yield AssetCheckResult(asset_key=key, check_name=f"gx_{rule}", passed=False,
                               severity=AssetCheckSeverity.WARN, metadata={"reason": reason})


def build_archive_quality_check(topic: str, key: AssetKey) -> AssetChecksDefinition:
    """GX archive suite of one topic's table, attached to its archive asset."""
    specs = [AssetCheckSpec(f"gx_{r}", asset=key, description=_DESCRIPTIONS[r]) for r in ARCHIVE_RULES]

    @multi_asset_check(specs=specs, name=f"gx_archive_{archive_table(topic)}", can_subset=False,
                       description=f"Great Expectations suite over the archive table of {topic}.")
    def _check(iceberg: IcebergCatalogResource, cassandra: CassandraResource,
               quality: QualityResource) -> Iterable[AssetCheckResult]:
        from rdg_platform.assets.quality.sampling import TableMissingError, read_archive_frame
        from rdg_platform.assets.quality.suites import validate_archive

        try:
            df = read_archive_frame(iceberg.catalog(), topic, iceberg.archive_namespace, quality.lookback_hours,
                                    quality.max_rows)
        except TableMissingError as exc:
            yield from _failed_all(ARCHIVE_RULES, key, str(exc))
            return
        schema = cassandra.spec().sources[topic].schema
        yield from _results(validate_archive(topic, df, schema, quality.archive_thresholds()), ARCHIVE_RULES, key)

    return _check


def build_graph_quality_check(kind: str, type_name: str, key: AssetKey) -> AssetChecksDefinition:
    """GX graph suite of one namespace (node or edge type), attached to its graph asset."""
    rules = [RULE_TTL, RULE_FRESHNESS] + ([RULE_ORPHAN_EDGES] if kind == "edge" else [])
    specs = [AssetCheckSpec(f"gx_{r}", asset=key, description=_DESCRIPTIONS[r]) for r in rules]

    @multi_asset_check(specs=specs, name=f"gx_graph_{kind}_{type_name}", can_subset=False,
                       description=f"Great Expectations suite over a sample of graph namespace {kind}.{type_name}.")
    def _check(cassandra: CassandraResource, quality: QualityResource) -> Iterable[AssetCheckResult]:
        yield from run_graph_quality(cassandra, quality, kind, type_name, key)

    return _check


def run_graph_quality(cassandra: CassandraResource, quality: QualityResource, kind: str, type_name: str,
                      key: AssetKey) -> list[AssetCheckResult]:
    from rdg_platform.assets.quality.sampling import sample_namespace, table_default_ttl
    from rdg_platform.assets.quality.suites import validate_graph_namespace

    spec = cassandra.spec()
    ns = spec.namespace(kind, type_name)  # type: ignore[arg-type]
    rules = [RULE_TTL, RULE_FRESHNESS] + ([RULE_ORPHAN_EDGES] if kind == "edge" else [])
    store = cassandra.graph_store(writer=False)
    try:
        default_ttl = table_default_ttl(store.kv, ns)
        if default_ttl is None:
            return list(_failed_all(rules, key, f"table {ns.keyspace}.{ns.table} does not exist"))
        sample = sample_namespace(store, spec, ns, quality.sample_size)
    finally:
        store.close()
    res = validate_graph_namespace(ns.name, ns.ttl_s, sample, int(time.time() * 1000), default_ttl,
                                   kind == "edge", quality.graph_thresholds())
    return list(_results(res, rules, key))


def build_quality_checks(archive_keys: dict[str, AssetKey], graph_keys: dict[tuple[str, str], AssetKey]
                         ) -> list[AssetChecksDefinition]:
    out = [build_archive_quality_check(t, k) for t, k in archive_keys.items()]
    out += [build_graph_quality_check(kind, name, k) for (kind, name), k in graph_keys.items()]
    return out


__all__: list[Any] = [
    "CHECK_EVENT_ID_UNIQUE", "CHECK_EVENT_TIME_IN_WINDOW", "CHECK_FRESHNESS", "CHECK_IDS_NOT_NULL",
    "CHECK_ORPHAN_EDGES", "CHECK_SCHEMA", "CHECK_TTL", "QualityResource", "build_quality_checks",
]
