"""``rdg config show``: the effective settings, where each came from, secrets masked."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from rdg_platform.cli.context import settings

config_app = typer.Typer(help="Inspect the effective settings (environment, RDG_CONFIG file, defaults).",
                         no_args_is_help=True)


@config_app.command()
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print every RDG_* setting with its effective value and its source (env, file or default).

    Secrets (passwords, tokens) are always shown as ******** ; `rdg env --role` is the only command
    that prints credentials, for `eval` in a shell.
    """
    s = settings()
    sources = s.sources()
    rows = [(name, value, sources[name]) for name, value, _f in s.items()]
    if as_json:
        typer.echo(json.dumps([{"name": n, "value": v, "source": src} for n, v, src in rows], indent=2))
        return
    width = max(len(n) for n, _v, _s in rows)
    typer.echo(f"{'setting':{width}}  {'source':7}  value")
    for name, value, src in rows:
        typer.echo(f"{name:{width}}  {src:7}  {'' if value is None else value}")
