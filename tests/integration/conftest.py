"""Session fixture for the local Kubernetes control plane, shared by every test that needs a real
API server.

It installs etcd when missing (Debian's etcd-server, as the browser test does for Chromium), builds
the control-plane binaries on first use (minutes, once per machine; progress goes to the terminal
even under output capture) and starts the control plane in the session's state directory. It stays
up afterwards like the JVM services; ``.ci/run`` stops it with ``rdg k8s down``. If anything fails,
the fixture raises, so dependent tests fail instead of skipping.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

import pytest

from rdg_platform.local_services.k8s import K8sControlPlane

ROOT = Path(__file__).resolve().parents[2]


class _Dirs(Protocol):
    """The part of the session settings this fixture needs (whichever settings class provides it)."""

    state_dir: Path
    cache_dir: Path


def _echo(message: str) -> None:
    print(f"[k8s] {message}", flush=True)


@pytest.fixture(scope="session")
def k8s_control_plane(request: pytest.FixtureRequest, cfg: _Dirs) -> K8sControlPlane:
    """A running, healthy local control plane (etcd, apiserver, controller-manager, scheduler, kwok)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    plane = K8sControlPlane(cfg.state_dir, cfg.cache_dir, echo=_echo)
    with capture.global_and_fixture_disabled():
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure_etcd.sh")], check=True, timeout=900)
        plane.up()
    return plane
