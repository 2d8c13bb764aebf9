"""Erasure: the Dagster side of member erasure (see :mod:`rdg_platform.erasure`).

``erasure_job`` runs one op as the admin role (the shared Cassandra and Iceberg resources): with
``erasure_id`` in its config it runs (or continues) that erasure; with ``account_id`` it requests and
runs an erasure of that account; with neither it continues every unfinished erasure. The hourly
``erasure_resume_hourly`` schedule runs it with no config, which is how an erasure whose archive
grace period (``RDG_ERASURE_ARCHIVE_GRACE_S``) has passed gets its snapshots expired.

Prefer requesting erasures through ``POST /v1/erasures`` or ``rdg erase account``: an ``account_id``
given as run config is kept in Dagster's run storage with the run, which is personal data outside
the erasure's reach; an ``erasure_id`` is not.
"""

from dagster import Config, Definitions, JobDefinition, OpExecutionContext, ScheduleDefinition, job, op
from pydantic import Field

from rdg_platform.assets.archive import default_schedule_status
from rdg_platform.erasure import ErasureEngine, ErasureStatus
from rdg_platform.resources import (
    CASSANDRA,
    ICEBERG,
    CassandraResource,
    IcebergCatalogResource,
    PlatformResources,
)
from rdg_platform.settings import Settings

JOB = "erasure_job"


class EraseConfig(Config):  # type: ignore[misc]
    """Run config of the erasure op (all optional: empty = continue every unfinished erasure)."""

    erasure_id: str | None = Field(default=None, description="run or continue this erasure")
    account_id: str | None = Field(
        default=None, description="request and run an erasure of this account (kept in run storage: prefer the API)")
    wait_grace_s: float = Field(default=0.0, ge=0, description="wait up to this long for the archive grace period")


def _log(context: OpExecutionContext, st: ErasureStatus) -> None:
    context.log.info(f"erasure {st.erasure_id}: {st.status} step={st.step} counts={st.counts}")


def build_erasure_job(grace_s: float) -> JobDefinition:
    """The erasure job, its op bound to the archive grace period from the settings."""

    @op(name="erase_members", description="Runs or continues erasures (graph, archive, audit) as the admin role.")
    def erase_members(context: OpExecutionContext, config: EraseConfig, cassandra: CassandraResource,
                      iceberg: IcebergCatalogResource) -> dict[str, str]:
        store = cassandra.graph_store()
        try:
            engine = ErasureEngine(store, iceberg.config(), grace_s)
            engine.ensure_schema()
            if config.account_id:
                st = engine.request("account", config.account_id)
                done = [engine.run(st.erasure_id, wait_grace_s=config.wait_grace_s, progress=lambda s: _log(context, s))]
            elif config.erasure_id:
                done = [engine.run(config.erasure_id, wait_grace_s=config.wait_grace_s,
                                   progress=lambda s: _log(context, s))]
            else:
                done = engine.run_pending(wait_grace_s=config.wait_grace_s, progress=lambda s: _log(context, s))
        finally:
            store.close()
        failed = [st.erasure_id for st in done if st.status == "failed"]
        if failed:
            raise RuntimeError(f"erasures failed (see their audit rows): {failed}")
        return {st.erasure_id: st.status for st in done}

    @job(name=JOB, description="Member erasure: run one erasure, or continue every unfinished one.")
    def erasure_job() -> None:
        erase_members()

    return erasure_job


def defs(settings: Settings, resources: PlatformResources) -> Definitions:
    """The erasure domain: the job and its hourly resume schedule, on the shared Cassandra and Iceberg
    resources."""
    erasure_job = build_erasure_job(settings.erasure.archive_grace_s)
    schedule = ScheduleDefinition(name="erasure_resume_hourly", job=erasure_job, cron_schedule="17 * * * *",
                                  execution_timezone="UTC", default_status=default_schedule_status(settings))
    return Definitions(jobs=[erasure_job], schedules=[schedule], resources=resources.select(CASSANDRA, ICEBERG))
