"""``rdg apps up|down|status|run|list``: the streaming apps as supervised local processes."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from rdg_platform.cli.context import role_settings, settings

apps_app = typer.Typer(help="Run the streaming apps (processors and Cassandra sinks) as supervised local "
                            "processes that restart on crash with backoff.", no_args_is_help=True)

NamesArg = Annotated[list[str] | None, typer.Argument(help="App names (default: all; see `rdg apps list`).")]


@apps_app.command("up")
def up(names: NamesArg = None) -> None:
    """Start every app (or the named ones) under a restart watchdog; logs under <state_dir>/logs."""
    from rdg_platform.streaming.supervisor import AppSupervisor, SupervisorError, format_status

    try:
        states = AppSupervisor(role_settings("app")).up(names)
    except SupervisorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(format_status(states))


@apps_app.command("down")
def down(names: NamesArg = None) -> None:
    """Stop every app (or the named ones) gracefully (each commits its checkpoint first)."""
    from rdg_platform.streaming.supervisor import AppSupervisor, format_status

    typer.echo(format_status(AppSupervisor(role_settings("app")).down(names)))


@apps_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Each app's state, pid, restarts, consumer lag and input rate (from its metrics endpoint)."""
    from rdg_platform.streaming.supervisor import AppSupervisor, format_status

    states = AppSupervisor(role_settings("app")).status()
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in states], indent=2))
    else:
        typer.echo(format_status(states))


@apps_app.command("list")
def list_apps() -> None:
    """The app registry: name, kind, consumer group, input topics, metrics port."""
    from rdg_platform.streaming.apps import app_specs

    s = settings()
    for a in app_specs(s.load_spec(), s.streaming, s.topics_file):
        typer.echo(f"{a.name:28} {a.kind:9} {a.consumer_group:34} :{a.metrics_port}  {', '.join(a.input_topics)}")


@apps_app.command("run")
def run(name: Annotated[str, typer.Argument(help="App name.")]) -> None:
    """Run one app in the foreground (what the supervisor and Kubernetes pods execute)."""
    from rdg_platform.streaming.__main__ import main

    raise typer.Exit(main(["run", name]))
