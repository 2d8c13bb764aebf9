"""``rdg k8s up|down|status``: the local Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok simulating one node).

Exit codes: 0 on success; 1 when the control plane cannot be built or started, or (for ``status``)
when any component is not running and healthy, so scripts and CI can gate on ``rdg k8s status``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from rdg_platform.cli.context import settings
from rdg_platform.local_services.k8s import DEFAULT_TIMEOUT_S, K8sControlPlane, K8sError, format_table

k8s_app = typer.Typer(
    help=(
        "Run a real local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler; "
        "kwok simulates the node). Kubeconfig: $RDG_STATE_DIR/k8s/kubeconfig."
    ),
    no_args_is_help=True,
)


def _control_plane() -> K8sControlPlane:
    """The control plane of the configured state and cache directories (the one settings lookup)."""
    return K8sControlPlane.from_settings(settings(), echo=typer.echo)


@k8s_app.command()
def up(
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for every component to be healthy (after any build).")
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """Start the control plane and wait until the API server is ready and the kwok node is Ready.

    The first run on a machine builds kube-apiserver, kube-controller-manager, kube-scheduler and
    kwok from the Go module proxy (several minutes; progress is printed) and caches them; etcd comes
    from Debian's etcd-server package (scripts/ensure_etcd.sh installs it). Running components are
    left alone, so running it twice is harmless. Stop it with `rdg k8s down`.
    """
    try:
        statuses = _control_plane().up(timeout=timeout)
    except K8sError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(format_table(statuses))


@k8s_app.command()
def down(
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the cluster's data (etcd), keeping credentials.")
    ] = False,
) -> None:
    """Stop the components this state directory started (SIGTERM, then SIGKILL after a grace period).

    Only processes recorded in our pid files and verified to still be ours are signalled.
    """
    _control_plane().down(purge=purge)


@k8s_app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show each component's pid, port and health; exit 1 unless all are running and healthy."""
    plane = _control_plane()
    statuses = plane.status()
    if as_json:
        typer.echo(json.dumps({name: st.as_dict() for name, st in statuses.items()}, indent=2))
    else:
        typer.echo(format_table(statuses))
        typer.echo(f"kubeconfig: {plane.kubeconfig_path}")
    if not all(st.healthy for st in statuses.values()):
        raise typer.Exit(1)
