"""The ``rdg`` command line: one Typer app assembling each area's commands.

Each area (services, topics, generator, apps, query, serving, demo, UI) lives in its own module under
``rdg_platform/cli/`` so a newcomer finds a command where its name says it is.
"""

from __future__ import annotations

import typer

from rdg_platform.cli.apps import apps_app
from rdg_platform.cli.config import config_app
from rdg_platform.cli.dagster_ui import ui
from rdg_platform.cli.demo import demo
from rdg_platform.cli.dlq import dlq_app
from rdg_platform.cli.env import env
from rdg_platform.cli.erase import erase_app
from rdg_platform.cli.generate import generate
from rdg_platform.cli.k8s import k8s_app
from rdg_platform.cli.query import query_app
from rdg_platform.cli.serve import serve
from rdg_platform.cli.services import services_app
from rdg_platform.cli.topics import topics_app

app = typer.Typer(
    help="rdg-platform: a real-time distributed graph of member activity (Kafka -> Cassandra -> API).",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(config_app, name="config")
app.command("env", help="Print one role's settings (credentials included) as export lines for eval.")(env)
app.add_typer(services_app, name="services")
app.add_typer(k8s_app, name="k8s")
app.add_typer(topics_app, name="topics")
app.command("generate", help="Send realistic, deterministic member journeys to the source topics.")(generate)
app.add_typer(apps_app, name="apps")
app.command("serve", help="Run the graph query HTTP service (FastAPI + uvicorn).")(serve)
app.add_typer(query_app, name="query")
app.add_typer(erase_app, name="erase")
app.add_typer(dlq_app, name="dlq")
app.command("ui", help="Run the Dagster UI (webserver + daemon) on the project's definitions.")(ui)
app.command("demo", help="Run the platform end to end: services, apps, graph API, Dagster UI, live events.")(demo)

__all__ = ["app"]
