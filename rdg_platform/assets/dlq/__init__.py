"""Dead letters as an operations asset: how many bad records wait in each ``<topic>.dlq``, by reason.

``dlq_volume`` reads every DLQ topic of the model (and the re-drive ledger) and records, per topic and
reason, the records dead-lettered and how many of them were already re-driven. Its check fails when
the records still waiting (not re-driven) of any reason exceed ``RDG_DAGSTER_DLQ_ALERT_THRESHOLD``, so a
poison producer or a bad deploy shows up in the Dagster UI instead of piling up unseen. Inspect and
re-drive with ``rdg dlq list|show|redrive``.
"""

from collections.abc import Mapping

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetSelection,
    Definitions,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    asset_check,
    define_asset_job,
)

from rdg_platform.assets.archive import default_schedule_status
from rdg_platform.resources import PlatformResources
from rdg_platform.settings import Settings

GROUP = "operations"
JOB = "dlq_volume_job"
CHECK = "dlq_waiting_below_threshold"

# topic -> reason -> (dead-lettered, of which re-driven)
Volume = Mapping[str, Mapping[str, tuple[int, int]]]


def waiting_over(volume: Volume, threshold: int) -> dict[str, int]:
    """``"<topic>: <reason>" -> records still waiting`` for every reason above ``threshold``."""
    return {f"{t}: {r}": n - done for t, by in volume.items() for r, (n, done) in by.items()
            if n - done > threshold}


def volume_table(volume: Volume) -> str:
    rows = ["| DLQ topic | reason | dead-lettered | re-driven | waiting |", "|---|---|---:|---:|---:|"]
    for t in sorted(volume):
        for r, (n, done) in sorted(volume[t].items()):
            rows.append(f"| {t} | {r} | {n} | {done} | {n - done} |")
    return "\n".join(rows)


def read_volume(settings: Settings) -> dict[str, dict[str, tuple[int, int]]]:
    """Read every DLQ topic to its end (no consumer group commits) and count by reason."""
    from rdg_platform.streaming.dlq import dlq_topics, read_topics, redriven, summarize

    spec = settings.load_spec()
    return summarize(read_topics(settings, dlq_topics(spec)), redriven(settings))


def defs(settings: Settings, resources: PlatformResources | None = None) -> Definitions:
    """The DLQ domain: the volume asset, its threshold check and an hourly job."""
    threshold = settings.dagster.dlq_alert_threshold

    @asset(name="dlq_volume", group_name=GROUP, compute_kind="kafka")
    def dlq_volume(context: AssetExecutionContext) -> MaterializeResult:
        """Dead-lettered records per DLQ topic and reason, and how many were re-driven (read from the
        DLQ topics and the re-drive ledger; `rdg dlq list` shows the same)."""
        volume = read_volume(settings)
        total = sum(n for by in volume.values() for n, _d in by.values())
        waiting = sum(n - d for by in volume.values() for n, d in by.values())
        context.log.info("dead letters: %d, still waiting: %d", total, waiting)
        return MaterializeResult(metadata={
            "dead_lettered": total, "waiting": waiting,
            "by_reason": MetadataValue.md(volume_table(volume) if volume else "no dead letters"),
            "volume": MetadataValue.json({t: {r: {"dead_lettered": n, "redriven": d} for r, (n, d) in by.items()}
                                          for t, by in volume.items()}),
        })

    @asset_check(asset=dlq_volume, name=CHECK, blocking=False,
                 description=f"No reason has more than {threshold} dead letters waiting (not re-driven).")
    def dlq_waiting_below_threshold() -> AssetCheckResult:
        over = waiting_over(read_volume(settings), threshold)
        return AssetCheckResult(passed=not over, severity=AssetCheckSeverity.WARN,
                                metadata={"threshold": threshold, "over": MetadataValue.json(over)})

    job = define_asset_job(JOB, selection=AssetSelection.groups(GROUP),
                           description="Count dead letters by reason and check the waiting volume.")
    return Definitions(
        assets=[dlq_volume], asset_checks=[dlq_waiting_below_threshold], jobs=[job],
        schedules=[ScheduleDefinition(name="dlq_volume_hourly", job=job, cron_schedule="7 * * * *",
                                      execution_timezone="UTC", default_status=default_schedule_status(settings))])
