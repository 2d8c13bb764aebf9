"""``rdg k8s up|down|status``: the local Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok simulating one node); ``rdg k8s deploy|render``:
the platform's objects from a values file, through the one renderer Dagster's launcher uses.

Exit codes: 0 on success; 1 when the control plane cannot be built or started, or (for ``status``)
when any component is not running and healthy, so scripts and CI can gate on ``rdg k8s status``.
"""

from __future__ import annotations

import json
from pathlib import Path
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


ValuesOpt = Annotated[Path, typer.Option("--values", "-f", help="Values file, e.g. deploy/values/local.yaml.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Override the values' namespace (e.g. a test namespace).")]


def _render(values: Path, namespace: str | None) -> list[dict[str, object]]:
    from rdg_platform.launcher.manifests import ManifestError, load_values, render

    try:
        v = load_values(values)
        return render(v.with_namespace(namespace) if namespace else v)
    except ManifestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _kubeconfig(explicit: Path | None) -> Path:
    """--kubeconfig, else RDG_K8S_KUBECONFIG, else the local control plane's, else ~/.kube/config."""
    if explicit is not None:
        return explicit
    s = settings()
    if s.k8s.kubeconfig is not None:
        return s.k8s.kubeconfig
    local = K8sControlPlane.from_settings(s).kubeconfig_path
    return local if local.is_file() else Path.home() / ".kube" / "config"


@k8s_app.command()
def render(values: ValuesOpt, namespace: NamespaceOpt = None) -> None:
    """Print every object `deploy` would apply, as YAML (for review or GitOps); touches no cluster."""
    from rdg_platform.launcher.manifests import to_yaml

    typer.echo(to_yaml(_render(values, namespace)), nl=False)


@k8s_app.command()
def deploy(
    values: ValuesOpt,
    namespace: NamespaceOpt = None,
    kubeconfig: Annotated[Path | None, typer.Option(
        "--kubeconfig", help="Default: RDG_K8S_KUBECONFIG, else the local control plane's, else ~/.kube/config.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Server-side dry run: validated, nothing stored.")] = False,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for every Deployment to be Available "
                                                     "(0: do not wait).")] = 0.0,
) -> None:
    """Server-side apply the platform (field manager rdg-platform): namespace, RBAC, settings
    ConfigMap, NetworkPolicies, the graph API, Dagster and one Deployment per streaming app.

    Re-applying never scales a running app back: an app keeps its current replicas (Dagster's scale
    job owns them), other Deployments keep the larger of current and values. Secrets are not
    created here: see README "Deploying to Kubernetes". Exit 1 when the cluster refuses an object
    or (with --wait) a Deployment does not become Available; 2 on invalid values.
    """
    from rdg_platform.launcher.base import LauncherError
    from rdg_platform.launcher.kubernetes import api_client, apply, wait_available

    objects = _render(values, namespace)
    path = _kubeconfig(kubeconfig)
    typer.echo(f"kubeconfig: {path}")
    try:
        client = api_client(path)
        apply(client, objects, dry_run=dry_run, echo=typer.echo)
        if wait > 0 and not dry_run:
            ns = str(objects[0]["metadata"]["name"])  # type: ignore[index]
            names = [str(o["metadata"]["name"]) for o in objects if o["kind"] == "Deployment"]  # type: ignore[index]
            for name, state in wait_available(client, ns, names, wait).items():
                typer.echo(f"{name}: {state}")
    except LauncherError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
