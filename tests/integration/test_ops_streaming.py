"""Streaming control end to end with the local launcher (the real supervisor, real app processes,
real Kafka): deploy through a Dagster job, kill the app, and the health sensor restarts it; an app
stopped through the stop job is left stopped."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetCheckEvaluation, AssetObservation, SensorResult, build_sensor_context

from rdg_platform.assets.streaming_control import (
    APPS,
    CHECK_RUNNING,
    deploy_streaming_apps,
    stop_streaming_apps,
    streaming_apps_health_sensor,
)
from rdg_platform.assets.streaming_control.resource import StreamingLauncherResource
from rdg_platform.launcher.base import AppStatus
from rdg_platform.launcher.local import LocalProcessLauncher
from rdg_platform.settings import Settings, load_settings
from tests.support.poll import poll_until
from tests.support.streaming import free_port_block

pytestmark = pytest.mark.integration


def _status(res: StreamingLauncherResource, app: str) -> AppStatus:
    return next(s for s in res.launcher().status() if s.name == app)


def _wait(res: StreamingLauncherResource, app: str, running: bool, timeout: float = 60.0) -> AppStatus:
    return poll_until(lambda: _status(res, app), lambda st: st.running == running and (not running or bool(st.pids)),
                      what=f"{app} running={running}", timeout_s=timeout, interval_s=0.5)


@pytest.fixture
def launcher_resource(services: object, cfg: Settings, tmp_path: Path) -> Iterator[StreamingLauncherResource]:
    """The session's services; a state dir, consumer groups and metrics ports of this test's own."""
    env = cfg.child_env(base={})
    env.update({"RDG_STATE_DIR": str(tmp_path / "state"), "RDG_STREAMING_GROUP_PREFIX": f"rdgtest-ops-{tmp_path.name}",
                "RDG_STREAMING_METRICS_BASE_PORT": str(free_port_block(len(APPS))),
                "RDG_STREAMING_OFFSET_RESET": "latest"})
    res = StreamingLauncherResource(load_settings(env), kind="local", lag_timeout_s=2.0)
    yield res
    res.launcher().stop()


def _tick(res: StreamingLauncherResource) -> list[AssetObservation]:
    with build_sensor_context(resources={"streaming_launcher": res}) as ctx:
        started = time.monotonic()
        result = streaming_apps_health_sensor(ctx)
        assert time.monotonic() - started < 30, "a sensor tick must stay short"
    assert isinstance(result, SensorResult)
    return [e for e in result.asset_events if isinstance(e, AssetObservation)]


def test_sensor_restarts_a_killed_app(launcher_resource: StreamingLauncherResource) -> None:
    app = APPS[0].name
    run = deploy_streaming_apps.execute_in_process(
        run_config={"ops": {"deploy_apps_op": {"config": {"apps": [app]}}}},
        resources={"streaming_launcher": launcher_resource})
    assert run.success
    before = _wait(launcher_resource, app, running=True)
    old_pid = before.pids[0]

    # Kill the app AND its watchdog (a killed child alone is restarted by the watchdog itself, with
    # backoff; with the watchdog gone only the control plane can bring the app back).
    launcher = launcher_resource.launcher()
    assert isinstance(launcher, LocalProcessLauncher)
    state = launcher.supervisor.read_state(app)
    assert state.supervisor_pid is not None
    os.kill(state.supervisor_pid, signal.SIGKILL)
    os.kill(old_pid, signal.SIGKILL)
    dead = _wait(launcher_resource, app, running=False, timeout=30)
    assert dead.dead, f"a killed app must count as dead (expected to run): {dead}"

    observations = _tick(launcher_resource)
    obs = next(o for o in observations if o.asset_key.path[-1] == app)
    assert obs.metadata["restarted"].value is True
    assert "lag" in obs.metadata and "running" in obs.metadata
    after = _wait(launcher_resource, app, running=True)
    assert after.pids and after.pids[0] != old_pid


def test_stopped_app_is_not_restarted(launcher_resource: StreamingLauncherResource) -> None:
    app = APPS[0].name
    launcher_resource.launcher().deploy([app])
    _wait(launcher_resource, app, running=True)
    run = stop_streaming_apps.execute_in_process(
        run_config={"ops": {"stop_apps_op": {"config": {"apps": [app]}}}},
        resources={"streaming_launcher": launcher_resource})
    assert run.success
    _wait(launcher_resource, app, running=False)
    with build_sensor_context(resources={"streaming_launcher": launcher_resource}) as ctx:
        result = streaming_apps_health_sensor(ctx)
    assert isinstance(result, SensorResult)
    checks = [e for e in result.asset_events if isinstance(e, AssetCheckEvaluation)
              and e.check_name == CHECK_RUNNING and e.asset_key.path[-1] == app]
    assert checks and checks[0].passed  # stopped on purpose is not a failure
    assert not _status(launcher_resource, app).running
