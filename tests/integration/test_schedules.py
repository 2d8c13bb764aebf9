"""Schedules and sensors of normal operation run in a fresh Dagster instance, and the archive offers
the hours its retention can hold (not years of empty partitions).

The definitions are loaded the way the webserver and the daemon load them (an in-process code location
on a Python file that builds them from explicit settings, no environment mutation), against a
new instance in a temporary Dagster home (``DagsterInstance.local_temp``, with schedule storage, as
``dagster dev`` creates one): a new instance has no stored schedule state, so the status the UI shows
and the daemon acts on is the one declared in code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance, HourlyPartitionsDefinition
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.code_location import InProcessCodeLocation
from dagster._core.scheduler.instigation import InstigatorStatus
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from rdg_platform.assets.archive import archive_start
from rdg_platform.model.spec import ArchivePolicy
from rdg_platform.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
# The schedules and sensors that are part of normal operation.
OPERATION_SCHEDULES = {"archive_hourly_schedule", "quality_checks_schedule", "lakehouse_maintenance_daily"}
OPERATION_SENSORS = {"streaming_apps_health_sensor"}


def _code(tmp_path: Path, env: dict[str, str]) -> Path:
    """A definitions file building the platform's Definitions from exactly ``env``."""
    f = tmp_path / "defs_under_test.py"
    f.write_text("from rdg_platform.definitions import build_definitions\n"
                 "from rdg_platform.settings import load_settings\n"
                 f"defs = build_definitions(load_settings({env!r}))\n")
    return f


def _statuses(tmp_path: Path, env: dict[str, str]) -> tuple[dict[str, InstigatorStatus], int]:
    """(instigator name -> status in a fresh instance, archive partitions count)."""
    origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=str(_code(tmp_path, env)),
                                                              attribute="defs", working_directory=str(ROOT)))
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    with DagsterInstance.local_temp(tempdir=str(home)) as instance, \
            InProcessCodeLocation(origin, instance) as location:
        repo = next(iter(location.get_repositories().values()))
        out: dict[str, InstigatorStatus] = {}
        for inst in [*repo.get_schedules(), *repo.get_sensors()]:
            stored = instance.get_instigator_state(inst.get_remote_origin_id(), inst.selector_id)
            out[inst.name] = inst.get_current_instigator_state(stored).status
        psets = [p for p in repo.get_partition_sets() if p.job_name == "archive_hourly_job"]
        assert len(psets) == 1, [p.name for p in repo.get_partition_sets()]
        count = len(psets[0].get_partition_names(instance))
    return out, count


def _running(status: InstigatorStatus) -> bool:
    return status in (InstigatorStatus.RUNNING, InstigatorStatus.DECLARED_IN_CODE)


def test_operation_schedules_and_sensors_run_in_a_fresh_instance(tmp_path: Path) -> None:
    env = {"RDG_STATE_DIR": str(tmp_path / "state")}
    statuses, _ = _statuses(tmp_path, env)
    missing = (OPERATION_SCHEDULES | OPERATION_SENSORS) - set(statuses)
    assert not missing, f"not defined: {missing}"
    stopped = {n: s.value for n, s in statuses.items() if n in OPERATION_SCHEDULES | OPERATION_SENSORS
               and not _running(s)}
    assert not stopped, f"stopped in a fresh instance: {stopped}"


def test_schedules_can_be_set_to_start_stopped(tmp_path: Path) -> None:
    env = {"RDG_STATE_DIR": str(tmp_path / "state"), "RDG_DAGSTER_SCHEDULES_RUNNING": "0"}
    statuses, _ = _statuses(tmp_path, env)
    assert not any(_running(statuses[n]) for n in OPERATION_SCHEDULES), statuses


def test_archive_partitions_start_at_the_retention_and_are_remembered(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    settings = load_settings({"RDG_STATE_DIR": str(state)})
    policy = settings.load_spec().archive
    assert policy.retention_days is not None
    first = archive_start(settings, policy)
    now = datetime.now(tz=UTC)
    assert now - timedelta(days=policy.retention_days + 1) <= first <= now - timedelta(days=policy.retention_days)
    # Remembered: a later load (a day on) keeps the partitions the UI already showed.
    assert archive_start(settings, policy, now=now + timedelta(days=1)) == first
    assert (state / "dagster" / "archive_start").read_text().strip() == first.strftime("%Y-%m-%d-%H:00")
    parts = HourlyPartitionsDefinition(start_date=first.strftime("%Y-%m-%d-%H:00"), timezone="UTC")
    n = len(parts.get_partition_keys())
    assert 24 * policy.retention_days <= n <= 24 * (policy.retention_days + 1), n
    # The partitions the code location serves are the same bounded set.
    _, served = _statuses(tmp_path, {"RDG_STATE_DIR": str(state)})
    assert 24 * policy.retention_days <= served <= 24 * (policy.retention_days + 1), served


def test_configured_archive_start_wins(tmp_path: Path) -> None:
    settings = load_settings({"RDG_STATE_DIR": str(tmp_path), "RDG_DAGSTER_ARCHIVE_START": "2025-03-01"})
    assert archive_start(settings, ArchivePolicy(30)) == datetime(2025, 3, 1, tzinfo=UTC)


def test_spec_rejects_archive_shorter_than_the_longest_ttl() -> None:
    import yaml

    from rdg_platform.model.spec import SpecError, default_spec_path, parse_spec

    doc = yaml.safe_load(default_spec_path().read_text())
    doc["archive"] = {"retention_days": 30}
    with pytest.raises(SpecError, match=r"archive.retention_days: 30 days is shorter than the TTL of namespace"):
        parse_spec(doc)
    doc["archive"] = {"retention_days": 30, "allow_shorter_than_ttl": True}
    assert parse_spec(doc).archive.retention_days == 30
    doc["archive"] = {"retention_days": None}
    assert parse_spec(doc).archive.retention_s is None
