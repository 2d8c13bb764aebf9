"""Integration tests for `rdg services`: a full lifecycle on real JVM processes.

These run their own instance (own RDG_STATE_DIR and free ports) so the session-wide shared services
used by other integration tests are never disturbed. They fail, never skip, when a service cannot
start: a broken local environment must be visible.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from rdg_platform.cli.services import services_app
from rdg_platform.local_services import ServiceError, ServiceManager
from rdg_platform.settings import Settings
from tests.support.session import isolated_settings

pytestmark = pytest.mark.integration

@pytest.fixture
def isolated_env(tmp_path: Path) -> Iterator[Settings]:
    """Settings with a private state dir and private ports; stop whatever the test started."""
    settings = isolated_settings(tmp_path / "state")
    yield settings
    ServiceManager(settings).down(purge=True)


def test_lifecycle_up_noop_status_down(isolated_env: Settings) -> None:
    manager = ServiceManager(isolated_env)
    statuses = manager.up()
    assert {name: st.healthy for name, st in statuses.items()} == {
        "cassandra": True,
        "registry": True,
        "kafka": True,
    }, statuses
    pids = {name: st.pid for name, st in statuses.items()}
    assert all(pids.values())
    assert statuses["cassandra"].version and statuses["cassandra"].version.startswith("5.0")
    assert statuses["kafka"].version and statuses["kafka"].version.startswith("4.")

    runner = CliRunner()
    second = runner.invoke(services_app, ["up"], env=isolated_env.child_env())
    assert second.exit_code == 0, second.output
    assert "already running" in second.output
    assert {name: st.pid for name, st in manager.status().items()} == pids  # nothing restarted

    status = runner.invoke(services_app, ["status"], env=isolated_env.child_env())
    assert status.exit_code == 0, status.output
    assert str(isolated_env.kafka.port) in status.output

    stopped = manager.down()
    assert all(outcome.startswith("stopped") or outcome.startswith("killed") for outcome in stopped.values())
    assert not manager.is_healthy()
    after = runner.invoke(services_app, ["status"], env=isolated_env.child_env())
    assert after.exit_code == 1, after.output  # documented: non-zero when anything is unhealthy


def test_port_in_use_is_reported_by_number(isolated_env: Settings) -> None:
    blocker = socket.socket()
    blocker.bind((isolated_env.registry.bind_host, isolated_env.registry.port))
    blocker.listen()
    try:
        with pytest.raises(ServiceError) as excinfo:
            ServiceManager(isolated_env).up(["registry"])
        message = str(excinfo.value)
        assert str(isolated_env.registry.port) in message
        assert "already in use" in message

        result = CliRunner().invoke(services_app, ["up", "--only", "registry"], env=isolated_env.child_env())
        assert result.exit_code == 1
        assert str(isolated_env.registry.port) in result.output
    finally:
        blocker.close()
    assert ServiceManager(isolated_env).status(["registry"])["registry"].state == "stopped"


def test_down_ignores_foreign_pid_file(isolated_env: Settings) -> None:
    """A pid file pointing at someone else's process (here: pytest itself) must not be signalled."""
    run_dir = isolated_env.state_dir / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "kafka.json").write_text(f'{{"pid": {os.getpid()}, "create_time": 0, "port": 1}}')
    outcome = ServiceManager(isolated_env).down(["kafka"])
    assert outcome == {"kafka": "not running"}


def test_down_stops_our_process_even_without_its_pid_file(isolated_env: Settings) -> None:
    manager = ServiceManager(isolated_env)
    pid = manager.up(["registry"])["registry"].pid
    assert pid is not None
    manager._pid_file("registry").unlink()  # as if the CLI died before writing it
    outcome = manager.down(["registry"], purge=True)
    assert outcome["registry"].startswith("stopped"), outcome
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
