"""Session fixture for the local Kubernetes control plane, shared by every test that needs a real
API server.

Before the first test runs, if any collected test uses the control plane, etcd is installed when
missing (Debian's etcd-server, as the browser test does for Chromium) and the control-plane binaries
are built (minutes, once per machine; progress goes to the terminal even under output capture).
Doing that after collection keeps the one-time compile outside every test's timeout. The fixture
then starts the control plane in the session's state directory; it stays up afterwards like the JVM
services, and ``.ci/run`` stops it with ``rdg k8s down``. If anything fails, the fixture raises, so
dependent tests fail instead of skipping.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rdg_platform.local_services.k8s import K8sControlPlane
from rdg_platform.settings import Settings
from tests.support.session import session_settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = "k8s_control_plane"


def _echo(message: str) -> None:
    print(f"[k8s] {message}", flush=True)


def _ensure_etcd() -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure_etcd.sh")], check=True, timeout=900)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Install etcd and build the binaries up front when a collected test needs the control plane.

    A failure here is not raised: the fixture repeats the same steps and fails the tests that need
    it, with the cause, while the rest of the session runs.
    """
    if session.config.option.collectonly:
        return
    if not any(FIXTURE in getattr(item, "fixturenames", ()) for item in session.items):
        return
    cfg = session_settings()
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        try:
            _ensure_etcd()
            K8sControlPlane.from_settings(cfg, echo=_echo).ensure_binaries()
        except Exception as exc:  # reported again by the fixture, in each test that needs it
            _echo(f"preparing the control plane failed; tests that need it will fail: {exc}")


@pytest.fixture(scope="session")
def k8s_control_plane(request: pytest.FixtureRequest, cfg: Settings) -> K8sControlPlane:
    """A running, healthy local control plane (etcd, apiserver, controller-manager, scheduler, kwok)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    plane = K8sControlPlane.from_settings(cfg, echo=_echo)
    with capture.global_and_fixture_disabled():
        _ensure_etcd()
        plane.up()
    return plane
