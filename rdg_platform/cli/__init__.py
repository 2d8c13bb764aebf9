"""The ``rdg`` command line: one Typer app assembling each area's commands.

Each area (services, topics, generator, apps, query, serving, demo, UI) lives in its own module under
``rdg_platform/cli/`` so a newcomer finds a command where its name says it is.
"""

from __future__ import annotations

import typer

from rdg_platform.cli.services import services_app

app = typer.Typer(
    help="rdg-platform: a real-time distributed graph of member activity (Kafka -> Cassandra -> API).",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(services_app, name="services")

__all__ = ["app"]
