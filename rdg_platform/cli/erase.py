"""``rdg erase``: erase a member (account, profiles, devices no one else uses, every edge of them, the
archive rows) in the foreground, with progress; show an erasure's status; resume unfinished ones.

Runs as the admin role (its credentials from the environment or, locally, from ``$RDG_STATE_DIR``):
it creates the erasure tables if needed and deletes from every graph namespace and the archive.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from rdg_platform.cli.context import settings
from rdg_platform.local_services.credentials import local_role_settings

erase_app = typer.Typer(help="Erase members (GDPR/CCPA): graph, archive and an audit trail without personal data.",
                        no_args_is_help=True)

WaitOpt = Annotated[float, typer.Option(
    "--wait-grace-s", help="Wait up to this long for the archive grace period (RDG_ERASURE_ARCHIVE_GRACE_S) to "
                           "pass and finish now; otherwise the erasure stays running at step 'expire' until "
                           "`rdg erase resume` or the Dagster schedule runs after the grace period")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the final status as JSON")]


def _engine() -> Any:
    from rdg_platform.erasure import ErasureEngine
    from rdg_platform.kv.graph_store import GraphStore

    s = local_role_settings(settings(), "admin")
    store = GraphStore.from_spec(s.load_spec(), s.cassandra, erasure=s.erasure)
    return ErasureEngine.from_settings(store, s)


def _progress(st: Any) -> None:
    c = st.counts
    extra = ""
    if st.step == "graph" and "graph_nodes_total" in c:
        extra = f" nodes {c.get('graph_nodes_done', 0)}/{c['graph_nodes_total']}"
    typer.echo(f"erasure {st.erasure_id}: {st.status} step={st.step}{extra}", err=True)


def _finish(st: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(st.to_json(), indent=2, sort_keys=True))
    else:
        typer.echo(f"erasure {st.erasure_id}: {st.status} (step {st.step})")
        for k, v in sorted(st.counts.items()):
            typer.echo(f"  {k}: {v}")
        if st.status == "running" and st.step == "expire" and st.archive_expire_after_ms:
            typer.echo(f"  archive snapshots expire after {st.archive_expire_after_ms} (epoch ms): run "
                       "`rdg erase resume` then (the Dagster erasure schedule does it too)")


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
    return typer.Exit(2 if isinstance(exc, ValueError) else 1)


@erase_app.command("account", short_help="Erase an account now, in the foreground, with progress.")
def account(account_id: Annotated[str, typer.Argument(help="The account id to erase")],
            wait_grace_s: WaitOpt = 0.0,
            throttle_ms: Annotated[int, typer.Option(
                help="Pause after each erased node (spreads the deletes of a large erasure)", min=0)] = 0,
            as_json: JsonOpt = False) -> None:
    """Erase an account now, in the foreground: its node, its profiles, the devices no other account
    uses, every edge of those nodes (both directions, every namespace) and its archive rows. Deletes
    carry the erasure time as their timestamp, so older events cannot bring the member back. Running it
    again for the same account continues an unfinished erasure (e.g. after a crash)."""
    try:
        engine = _engine()
        try:
            engine.ensure_schema()
            st = engine.request("account", account_id)
            typer.echo(f"erasure {st.erasure_id}: erasure time {st.erasure_time_ms} (epoch ms)", err=True)
            st = engine.run(st.erasure_id, wait_grace_s=wait_grace_s, throttle_s=throttle_ms / 1000,
                            progress=_progress)
        finally:
            engine.store.close()
    except Exception as exc:
        raise _fail(exc) from None
    _finish(st, as_json)


@erase_app.command("status")
def status(erasure_id: Annotated[str, typer.Argument(help="The erasure id (from `rdg erase account` or the API)")],
           as_json: JsonOpt = False) -> None:
    """Print an erasure's status, step and counts (exit 3 when there is no such erasure)."""
    try:
        engine = _engine()
        try:
            st = engine.status(erasure_id)
        finally:
            engine.store.close()
    except Exception as exc:
        raise _fail(exc) from None
    if st is None:
        typer.echo(f"no erasure {erasure_id!r}", err=True)
        raise typer.Exit(3)
    _finish(st, as_json)


@erase_app.command("resume", short_help="Continue unfinished erasures.")
def resume(erasure_id: Annotated[str | None, typer.Argument(help="One erasure id (default: every unfinished one)")] = None,
           wait_grace_s: WaitOpt = 0.0, as_json: JsonOpt = False) -> None:
    """Continue unfinished erasures (after a crash, a failure, or once the archive grace period passed)."""
    try:
        engine = _engine()
        try:
            if erasure_id is not None:
                done = [engine.run(erasure_id, wait_grace_s=wait_grace_s, progress=_progress)]
            else:
                done = engine.run_pending(wait_grace_s=wait_grace_s, progress=_progress)
        finally:
            engine.store.close()
    except Exception as exc:
        raise _fail(exc) from None
    if not done:
        typer.echo("no unfinished erasures")
    for st in done:
        _finish(st, as_json)


@erase_app.command("setup")
def setup() -> None:
    """Create the erasure tables (audit, work, pending) in the graph keyspace; the API needs them."""
    try:
        engine = _engine()
        try:
            engine.ensure_schema()
        finally:
            engine.store.close()
    except Exception as exc:
        raise _fail(exc) from None
    typer.echo(f"erasure tables ready in keyspace {engine.audit.keyspace}")
