"""``rdg ui``: the Dagster UI (webserver + daemon) on the project's one Definitions entry point.

Runs ``dagster dev -w workspace.yaml`` on ``RDG_DAGSTER_BIND_HOST:RDG_DAGSTER_PORT`` with
``DAGSTER_HOME`` under the state directory (persistent runs/event log across restarts), so sensors and
schedules run too. The child's environment is built from the settings (``Settings.child_env``), so
``definitions.py`` rebuilds exactly these settings; this interpreter's ``bin`` leads its ``PATH`` so
dagster-dbt's ``prepare_if_dev`` finds the project's ``dbt``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from rdg_platform.cli.context import role_settings
from rdg_platform.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def dagster_command(port: int, host: str, workspace: Path) -> list[str]:
    exe = Path(sys.executable).parent / "dagster"
    return [str(exe) if exe.exists() else "dagster", "dev", "-w", str(workspace), "-h", host, "-p", str(port)]


def dagster_env(s: Settings, home: Path, env: Literal["local", "prod"]) -> dict[str, str]:
    """The Dagster process's environment: the settings (with ``RDG_ENV``), ``DAGSTER_HOME``, and this
    venv's ``bin`` first on ``PATH``."""
    child = s.child_env()
    child["RDG_ENV"] = env
    child["DAGSTER_HOME"] = str(home)
    bin_dir = str(Path(sys.executable).parent)
    child["PATH"] = f"{bin_dir}:{child['PATH']}" if child.get("PATH") else bin_dir
    return child


def ui(port: Annotated[int | None, typer.Option(help="Port (default RDG_DAGSTER_PORT, 3000)")] = None,
       host: Annotated[str | None, typer.Option(help="Bind address (default RDG_DAGSTER_BIND_HOST)")] = None,
       env: Annotated[str, typer.Option(help="RDG_ENV for the definitions: local or prod")] = "local",
       dagster_home: Annotated[Path | None, typer.Option(help="DAGSTER_HOME (default <state_dir>/dagster)")] = None,
       workspace: Annotated[Path, typer.Option(help="workspace.yaml to load")] = ROOT / "workspace.yaml") -> None:
    """Run the Dagster UI with the streaming apps, archive, maintenance, quality and dbt assets."""
    s = role_settings("admin")
    if env not in ("local", "prod"):
        raise typer.BadParameter("must be local or prod", param_hint="--env")
    mode: Literal["local", "prod"] = "prod" if env == "prod" else "local"
    home = (dagster_home or s.state_dir / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not workspace.exists():
        raise typer.BadParameter(f"{workspace} not found", param_hint="--workspace")
    bind, p = host or s.dagster.bind_host, port or s.dagster.port
    cmd = dagster_command(p, bind, workspace)
    typer.echo(f"Dagster UI on http://{bind}:{p} (DAGSTER_HOME={home})")
    try:
        raise typer.Exit(subprocess.call(cmd, env=dagster_env(s, home, mode), cwd=str(workspace.parent)))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
