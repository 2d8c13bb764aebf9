"""``rdg topics create|list``: Kafka topics from configuration (``rdg_platform/topology.yaml``).

Registered by the lead with ``app.add_typer(topics_app, name="topics")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rdg_platform.cli.context import role_settings
from rdg_platform.kafka_client import security_config
from rdg_platform.model.spec import GraphSpec, load_spec

topics_app = typer.Typer(
    help="Provision the platform's Kafka topics (sources, compacted catalogs, graph topics, DLQs) from config.",
    no_args_is_help=True,
)

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="Override YAML (same shape as rdg_platform/topology.yaml); default $RDG_TOPICS_FILE.")]
SpecOpt = Annotated[Path | None, typer.Option("--spec", help="Model spec YAML (default: the packaged one).")]
BootstrapOpt = Annotated[str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers (default from settings).")]


def _spec(path: Path | None) -> GraphSpec:
    s = role_settings("admin")
    return load_spec(path, s.spec_defaults()) if path else s.load_spec()


def _hours(h: int | None) -> str:
    return "forever" if h is None else f"{h}h"


@topics_app.command()
def create(config: ConfigOpt = None, spec: SpecOpt = None, bootstrap: BootstrapOpt = None,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change, change nothing.")] = False,
           ) -> None:
    """Create missing topics and align the configs of existing ones (idempotent)."""
    from rdg_platform.topology import TopicConfigError, ensure_topics

    bs = bootstrap or role_settings("admin").kafka.bootstrap_servers
    try:
        res = ensure_topics(bs, _spec(spec), overrides=config, dry_run=dry_run)
    except TopicConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:  # broker unreachable, admin errors
        typer.echo(f"error: cannot provision topics on {bs}: {exc}", err=True)
        raise typer.Exit(1) from exc
    verb = "would " if dry_run else ""
    for name in res.created:
        typer.echo(f"{verb}create  {name}")
    for name, diff in res.altered.items():
        typer.echo(f"{verb}alter   {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(diff.items())))
    for name, (old, new) in res.partitions_added.items():
        typer.echo(f"{verb}grow    {name}: {old} -> {new} partitions")
    for w in res.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"{len(res.created)} created, {len(res.altered)} altered, {len(res.unchanged)} unchanged")


@topics_app.command("list")
def list_topics(config: ConfigOpt = None, spec: SpecOpt = None, bootstrap: BootstrapOpt = None,
                desired: Annotated[bool, typer.Option("--desired", help="Show the configured layout only (no broker).")] = False,
                ) -> None:
    """The configured topics with partitions, retention and cleanup policy, and the broker's actual values."""
    from rdg_platform.topology import TopicConfigError, describe_topics, topic_specs

    try:
        wanted = topic_specs(_spec(spec), config or role_settings("admin").topics_file)
    except TopicConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    actual: dict[str, dict[str, object]] = {}
    if not desired:
        bs = bootstrap or role_settings("admin").kafka.bootstrap_servers
        try:
            actual = describe_topics(bs, [t.name for t in wanted], admin_conf=security_config(role_settings("admin").kafka))
        except Exception as exc:
            typer.echo(f"error: cannot describe topics on {bs}: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"{'topic':<34} {'role':<10} {'parts':>5} {'retention':>9} {'cleanup':<14} {'broker'}")
    for t in wanted:
        state = ""
        if not desired:
            cur = actual.get(t.name)
            if cur is None:
                state = "MISSING"
            else:
                cfgs = cur["configs"]
                assert isinstance(cfgs, dict)
                ok = cur["partitions"] == t.partitions and all(cfgs.get(k) == v for k, v in t.configs.items())
                state = "ok" if ok else f"DIFFERS (partitions={cur['partitions']}, retention.ms={cfgs.get('retention.ms')}, " \
                                        f"cleanup.policy={cfgs.get('cleanup.policy')})"
        typer.echo(f"{t.name:<34} {t.role:<10} {t.partitions:>5} {_hours(t.retention_hours):>9} {t.cleanup_policy:<14} {state}")
