"""The Dagster UI in a real browser (Debian's Chromium via Playwright; no browser download).

A session fixture starts ``dagster dev`` on a free port with a temporary DAGSTER_HOME (webserver +
daemon, so the streaming health sensor ticks) and the environment ``rdg ui`` gives it (the session's
settings, so the definitions reach the test services; dagster-dbt prepares the dbt manifest itself), then ``tests/ui/ui_check.py`` checks the asset graph
with every group, launches an archive partition, and reads a streaming app's health on its page.
Chromium is installed by ``tests/ui/ensure_chromium.sh`` (Debian package) when missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rdg_platform.cli.dagster_ui import dagster_command, dagster_env
from rdg_platform.local_services.base import free_ports
from rdg_platform.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "tests" / "ui"


@pytest.fixture(scope="session")
def chromium() -> str:
    subprocess.run(["bash", str(UI_DIR / "ensure_chromium.sh")], check=True, timeout=900)
    return "/usr/bin/chromium"


@pytest.fixture(scope="session")
def dagster_ui(services: object, cfg: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("dagster_home")
    port = free_ports(1)[0]
    log = open(home / "dagster_dev.log", "w")  # noqa: SIM115 - closed below
    # Own state dir: the UI's sensor must not supervise (or restart) the shared dev instance's apps,
    # and the archive partition launched from the browser lands in a temporary Iceberg catalog.
    env = dagster_env(cfg.model_copy(update={"state_dir": home / "rdg_state"}), home, "local")
    proc = subprocess.Popen(dagster_command(port, "127.0.0.1", ROOT / "workspace.yaml"), cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited: {(home / 'dagster_dev.log').read_text()[-3000:]}")
            try:
                r = httpx.post(f"{base}/graphql", json={"query": "{ workspaceOrError { __typename ... on Workspace "
                               "{ locationEntries { name loadStatus locationOrLoadError { __typename } } } } }"},
                               timeout=5)
                entries = r.json()["data"]["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    if entries[0]["locationOrLoadError"]["__typename"] != "RepositoryLocation":
                        raise RuntimeError(f"code location failed to load: {r.text[:2000]}")
                    break
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("dagster dev did not load the code location in 240 s")
            time.sleep(2)
        yield base
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


def test_ui_in_chromium(chromium: str, dagster_ui: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(UI_DIR))
    try:
        import ui_check
    finally:
        sys.path.pop(0)
    from rdg_platform.assets.streaming_control import APPS

    ui_check.run(dagster_ui, APPS[0].name, "2024-05-01-10:00", tmp_path / "shots", executable=chromium)
    assert (tmp_path / "shots" / "asset_graph.png").exists()
    assert (tmp_path / "shots" / "app_health.png").exists()
