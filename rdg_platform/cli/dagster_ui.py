"""``rdg ui``: the Dagster UI (webserver + daemon) on the project's one Definitions entry point.

Runs ``dagster dev -w workspace.yaml`` on ``settings().dagster_port`` with ``DAGSTER_HOME`` under the
state directory (persistent runs/event log across restarts), so sensors and schedules run too.
Registered by the lead as ``app.command("ui")(ui)``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from rdg_platform.config import settings

ROOT = Path(__file__).resolve().parents[2]


def dagster_command(port: int, host: str, workspace: Path) -> list[str]:
    exe = Path(sys.executable).parent / "dagster"
    return [str(exe) if exe.exists() else "dagster", "dev", "-w", str(workspace), "-h", host, "-p", str(port)]


def ui(port: Annotated[int | None, typer.Option(help="Port (default RDG_DAGSTER_PORT, 3000)")] = None,
       host: Annotated[str | None, typer.Option(help="Bind address (default RDG_HOST)")] = None,
       env: Annotated[str, typer.Option(help="RDG_ENV for the definitions: local or prod")] = "local",
       dagster_home: Annotated[Path | None, typer.Option(help="DAGSTER_HOME (default <state_dir>/dagster)")] = None,
       workspace: Annotated[Path, typer.Option(help="workspace.yaml to load")] = ROOT / "workspace.yaml") -> None:
    """Run the Dagster UI with the streaming apps, archive, maintenance, quality and dbt assets."""
    cfg = settings()
    home = (dagster_home or cfg.state_dir / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not workspace.exists():
        raise typer.BadParameter(f"{workspace} not found", param_hint="--workspace")
    child_env = {**os.environ, "DAGSTER_HOME": str(home), "RDG_ENV": env}
    cmd = dagster_command(port or cfg.dagster_port, host or cfg.host, workspace)
    typer.echo(f"Dagster UI on http://{host or cfg.host}:{port or cfg.dagster_port} (DAGSTER_HOME={home})")
    try:
        raise typer.Exit(subprocess.call(cmd, env=child_env, cwd=str(workspace.parent)))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
