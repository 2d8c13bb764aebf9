"""Great Expectations suites for the archive tables and the graph namespaces (GX 1.x, no Dagster).

Each suite is built in code and run with an *ephemeral* GX context over a pandas DataFrame: the data
quality rules live next to the platform's code, nothing is written to a GX project directory, and a
run needs no network. GX is imported lazily (it takes seconds), so loading the Dagster definitions
stays fast; only a check run pays for it.

Rules (each expectation carries a stable ``rule`` id in its ``meta`` so results map onto Dagster
asset checks):

- archive tables: ``schema`` (every Kafka and Avro column present), ``ids_not_null`` (each
  non-nullable ``*_id`` field), ``event_time_in_window`` (the event time lies in the hour partition
  of its ``kafka_ts``, give or take an allowed lateness/skew), ``event_id_unique``;
- graph namespaces: ``orphan_edges`` (an edge whose src or dst node is missing; a small rate is
  normal while nodes and edges travel on different topics), ``ttl`` (remaining TTL within the
  namespace's TTL, none for non-expiring namespaces), ``freshness`` (age of the newest
  ``updated_at``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from rdg_platform.lakehouse.schema import KAFKA_COLUMN_NAMES

RULE_SCHEMA = "schema"
RULE_IDS_NOT_NULL = "ids_not_null"
RULE_EVENT_TIME_IN_WINDOW = "event_time_in_window"
RULE_EVENT_ID_UNIQUE = "event_id_unique"
RULE_ORPHAN_EDGES = "orphan_edges"
RULE_TTL = "ttl"
RULE_FRESHNESS = "freshness"

ARCHIVE_RULES = (RULE_SCHEMA, RULE_IDS_NOT_NULL, RULE_EVENT_TIME_IN_WINDOW, RULE_EVENT_ID_UNIQUE)

_counter = itertools.count()


@dataclass(frozen=True)
class ArchiveThresholds:
    """Tolerances of the archive suite (defaults suit the local stack; prod sets its own)."""

    lateness_s: int = 3600  # event_time may precede its kafka_ts hour by this much (late delivery)
    skew_s: int = 300  # or follow its end by this much (producer clock skew)
    duplicate_event_id_rate: float = 0.0  # fraction of rows allowed in duplicate event_id groups


@dataclass(frozen=True)
class GraphThresholds:
    orphan_edge_rate: float = 0.01
    freshness_max_lag_s: int = 24 * 3600


@dataclass
class RuleResult:
    """One rule's outcome: the AND of its expectations, with their GX result summaries."""

    rule: str
    success: bool
    expectations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unexpected_count(self) -> int:
        return sum(int(e.get("unexpected_count") or 0) for e in self.expectations)


@dataclass
class SuiteResult:
    suite: str
    rows: int
    rules: dict[str, RuleResult]

    @property
    def success(self) -> bool:
        return all(r.success for r in self.rules.values())


def _gx() -> Any:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def avro_fields(avro_schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(avro_schema.get("fields", []))


def required_id_fields(avro_schema: Mapping[str, Any]) -> list[str]:
    """``*_id`` fields whose Avro type is not a nullable union: must never be null in the archive."""
    out = []
    for f in avro_fields(avro_schema):
        t = f["type"]
        nullable = isinstance(t, list) and "null" in t
        if f["name"].endswith("_id") and not nullable:
            out.append(f["name"])
    return out


def archive_expectations(avro_schema: Mapping[str, Any], thresholds: ArchiveThresholds) -> list[Any]:
    """The archive suite's expectations for one topic's table (GX expectation objects)."""
    import great_expectations.expectations as gxe

    names = [f["name"] for f in avro_fields(avro_schema)]
    exps: list[Any] = [gxe.ExpectTableColumnsToMatchSet(column_set=[*KAFKA_COLUMN_NAMES, *names],
                                                        exact_match=False, meta={"rule": RULE_SCHEMA})]
    for col in required_id_fields(avro_schema):
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, meta={"rule": RULE_IDS_NOT_NULL}))
    if "event_time" in names:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column="event_time", meta={"rule": RULE_EVENT_TIME_IN_WINDOW}))
        exps.append(gxe.ExpectColumnValuesToBeBetween(
            column="event_time_offset_s", min_value=-thresholds.lateness_s, max_value=3600 + thresholds.skew_s,
            meta={"rule": RULE_EVENT_TIME_IN_WINDOW}))
    if "event_id" in names:
        exps.append(gxe.ExpectColumnValuesToBeUnique(
            column="event_id", mostly=1.0 - thresholds.duplicate_event_id_rate, meta={"rule": RULE_EVENT_ID_UNIQUE}))
    return exps


def prepare_archive_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``event_time_offset_s``: seconds from the start of the row's hour partition (of kafka_ts)
    to its event_time, so "inside the partition window" is a plain range expectation."""
    out = df.copy()
    if "event_time" in out.columns and "kafka_ts" in out.columns:
        kts = pd.to_datetime(out["kafka_ts"], utc=True)
        et = pd.to_datetime(out["event_time"], utc=True)
        out["event_time_offset_s"] = (et - kts.dt.floor("h")).dt.total_seconds()
    return out


def run_suite(name: str, df: pd.DataFrame, expectations: Sequence[Any], rules: Sequence[str]) -> SuiteResult:
    """Validate ``df`` against ``expectations`` in an ephemeral GX context; group results by rule.

    A rule without any expectation for this frame (e.g. no event_id column) passes vacuously.
    """
    gx = _gx()
    uid = next(_counter)
    ctx = gx.get_context(mode="ephemeral")
    ds = ctx.data_sources.add_pandas(f"rdg_{uid}")
    batch_def = ds.add_dataframe_asset(f"frame_{uid}").add_batch_definition_whole_dataframe(f"all_{uid}")
    suite = ctx.suites.add(gx.ExpectationSuite(name=name))
    for e in expectations:
        suite.add_expectation(e)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"{name}_{uid}", data=batch_def, suite=suite))
    res = vd.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
    grouped: dict[str, RuleResult] = {r: RuleResult(r, True) for r in rules}
    for r in res.results:
        cfg = r.expectation_config
        rule = (cfg.meta or {}).get("rule", "other")
        rr = grouped.setdefault(rule, RuleResult(rule, True))
        summary = {"expectation": cfg.type, "success": bool(r.success)}
        kw = {k: v for k, v in cfg.kwargs.items() if k in ("column", "min_value", "max_value", "mostly", "value_set")}
        summary.update({k: (v if isinstance(v, int | float | str | bool | None) else str(v)) for k, v in kw.items()})
        if r.exception_info and r.exception_info.get("raised_exception"):
            summary["exception"] = str(r.exception_info.get("exception_message"))[:300]
        result = r.result or {}
        for k in ("observed_value", "unexpected_count", "unexpected_percent", "element_count",
                  "partial_unexpected_list"):
            if k in result:
                v = result[k]
                summary[k] = v if isinstance(v, int | float | str | bool | None) else str(v)[:300]
        rr.expectations.append(summary)
        rr.success = rr.success and bool(r.success)
    return SuiteResult(name, len(df), grouped)


def validate_archive(topic: str, df: pd.DataFrame, avro_schema: Mapping[str, Any],
                     thresholds: ArchiveThresholds | None = None) -> SuiteResult:
    """Run the archive suite of ``topic`` over rows of its table (as read by pyiceberg)."""
    t = thresholds or ArchiveThresholds()
    return run_suite(f"archive_{topic.replace('.', '_')}", prepare_archive_frame(df),
                     archive_expectations(avro_schema, t), ARCHIVE_RULES)


def validate_graph_namespace(namespace: str, ttl_s: int, sample: pd.DataFrame, now_ms: int,
                             table_default_ttl: int | None, is_edge: bool,
                             thresholds: GraphThresholds | None = None) -> SuiteResult:
    """Run the graph suite over a sample of a namespace's items.

    ``sample`` columns: ``record_id, item_key, updated_at, ttl_remaining`` and, for edges,
    ``orphan`` (bool: src or dst node missing). Freshness is judged on a one-row frame holding the
    age of the newest ``updated_at`` of the sample; TTL also compares the table's
    ``default_time_to_live`` with the spec (a drifted table silently keeps or drops data).
    """
    import great_expectations.expectations as gxe

    th = thresholds or GraphThresholds()
    frame = sample.copy()
    newest = int(frame["updated_at"].max()) if len(frame) else None
    frame["lag_s"] = None if newest is None else (now_ms - newest) / 1000.0
    frame["table_default_ttl"] = table_default_ttl
    if not len(frame):  # an empty namespace: one row saying so, so freshness fails rather than vacuously passes
        frame = pd.DataFrame([{"record_id": None, "item_key": None, "updated_at": None, "ttl_remaining": None,
                               "orphan": False, "lag_s": None, "table_default_ttl": table_default_ttl}])
    exps: list[Any] = [
        gxe.ExpectColumnValuesToBeInSet(column="table_default_ttl", value_set=[ttl_s], meta={"rule": RULE_TTL}),
        gxe.ExpectColumnValuesToNotBeNull(column="lag_s", meta={"rule": RULE_FRESHNESS}),
        gxe.ExpectColumnMaxToBeBetween(column="lag_s", min_value=-300, max_value=th.freshness_max_lag_s,
                                       meta={"rule": RULE_FRESHNESS}),
    ]
    if ttl_s > 0:
        exps.append(gxe.ExpectColumnValuesToBeBetween(column="ttl_remaining", min_value=1, max_value=ttl_s,
                                                      meta={"rule": RULE_TTL}))
        if len(sample):
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column="ttl_remaining", meta={"rule": RULE_TTL}))
    elif len(sample):
        exps.append(gxe.ExpectColumnValuesToBeNull(column="ttl_remaining", meta={"rule": RULE_TTL}))
    rules = [RULE_TTL, RULE_FRESHNESS]
    if is_edge:
        frame["orphan"] = frame["orphan"].astype(bool)
        exps.append(gxe.ExpectColumnValuesToBeInSet(column="orphan", value_set=[False],
                                                    mostly=1.0 - th.orphan_edge_rate, meta={"rule": RULE_ORPHAN_EDGES}))
        rules.append(RULE_ORPHAN_EDGES)
    return run_suite(f"graph_{namespace.replace('.', '_')}", frame, exps, rules)
