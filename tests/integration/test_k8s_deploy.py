"""The platform deployed on the session's real control plane (kube-apiserver 1.34, kwok runs the pods)
and operated through Dagster.

Oracles: ``kubectl`` (a separate client) reads what the API server holds and authorizes; the app
registry (:func:`rdg_platform.streaming.apps.app_specs`) and the topic layout say which apps exist
and how many partitions they read; Dagster itself loads the rendered instance config. The
renderer and launcher under test never judge their own output.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.admin import AdminClient
from dagster import (
    AssetCheckEvaluation,
    AssetObservation,
    DagsterInstance,
    SensorResult,
    build_sensor_context,
)
from typer.testing import CliRunner

from rdg_platform.assets.streaming_control import CHECK_RUNNING, build_defs, streaming_apps_health_sensor
from rdg_platform.assets.streaming_control.resource import StreamingLauncherResource
from rdg_platform.cli import app as cli
from rdg_platform.kafka_client import client_config
from rdg_platform.launcher.manifests import dagster_instance, load_values
from rdg_platform.local_services.k8s import K8sControlPlane
from rdg_platform.settings import Settings
from rdg_platform.streaming.apps import app_specs
from rdg_platform.topology import ensure_topics, partitions_of
from tests.support.lakehouse import postgres_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "deploy" / "values"
LOCAL = VALUES / "local.yaml"
APP = "member_login-processor"  # reads member.login
APP_DEPLOYMENT = "rdg-member-login-processor"


def kubectl(plane: K8sControlPlane, *args: str, check: bool = True, stdin: str | None = None) -> str:
    proc = subprocess.run(["kubectl", f"--kubeconfig={plane.kubeconfig_path}", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def deployment(plane: K8sControlPlane, ns: str, name: str) -> dict[str, Any] | None:
    out = subprocess.run(["kubectl", f"--kubeconfig={plane.kubeconfig_path}", "-n", ns, "get", "deployment", name,
                          "-o", "json"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        assert "NotFound" in out.stderr, out.stderr
        return None
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def wait_ready(plane: K8sControlPlane, ns: str, name: str, replicas: int, timeout: float = 60.0) -> dict[str, Any]:
    """The Deployment once kubectl sees ``replicas`` desired, ready and no other pods left over."""
    deadline = time.monotonic() + timeout
    while True:
        d = deployment(plane, ns, name)
        st = (d or {}).get("status") or {}
        if (d is not None and d["spec"]["replicas"] == replicas and int(st.get("readyReplicas") or 0) == replicas
                and int(st.get("replicas") or 0) == replicas):
            return d
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} not at {replicas} ready replicas: {None if d is None else st}")
        time.sleep(0.5)


def deploy_cli(plane: K8sControlPlane, ns: str, values: Path = LOCAL, *extra: str) -> str:
    res = CliRunner().invoke(cli, ["k8s", "deploy", "--values", str(values), "--namespace", ns,
                                   "--kubeconfig", str(plane.kubeconfig_path), *extra])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def deployed(k8s_control_plane: K8sControlPlane) -> Iterator[str]:
    """The local values applied with `rdg k8s deploy` into a namespace of this test module."""
    ns = f"rdg-it-{uuid.uuid4().hex[:6]}"
    deploy_cli(k8s_control_plane, ns)
    yield ns
    kubectl(k8s_control_plane, "delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
def launcher(cfg: Settings, k8s_control_plane: K8sControlPlane, deployed: str) -> StreamingLauncherResource:
    """The Dagster resource as production wires it, pointed at the control plane's kubeconfig; lag reads
    use the session's (admin) Kafka credentials."""
    return StreamingLauncherResource(cfg, kind="kubernetes", namespace=deployed,
                                     kubeconfig=k8s_control_plane.kubeconfig_path, lag_timeout_s=3.0)


def run_job(res: StreamingLauncherResource, job: str, config: dict[str, Any]) -> None:
    op = {"scale_streaming_app": "scale_app_op", "stop_streaming_apps": "stop_apps_op",
          "restart_streaming_app": "restart_app_op", "deploy_streaming_apps": "deploy_apps_op"}[job]
    result = build_defs(res).resolve_job_def(job).execute_in_process(
        run_config={"ops": {op: {"config": config}}}, instance=DagsterInstance.ephemeral())
    assert result.success


def test_local_values_bring_every_deployment_to_available(cfg: Settings, k8s_control_plane: K8sControlPlane,
                                                          deployed: str) -> None:
    kubectl(k8s_control_plane, "-n", deployed, "wait", "--for=condition=Available", "deployment", "--all",
            "--timeout=90s")
    names = set(kubectl(k8s_control_plane, "-n", deployed, "get", "deployments", "-o",
                        "jsonpath={.items[*].metadata.name}").split())
    apps = app_specs(cfg.load_spec(), cfg.streaming, cfg.topics_file)
    expected = {"rdg-api", "rdg-dagster-webserver", "rdg-dagster-daemon"} | {
        "rdg-" + a.name.replace("_", "-") for a in apps}
    assert names == expected
    svc = json.loads(kubectl(k8s_control_plane, "-n", deployed, "get", "services", "-o", "json"))
    assert {s["metadata"]["name"]: s["spec"]["type"] for s in svc["items"]} == {
        "rdg-api": "ClusterIP", "rdg-dagster-webserver": "ClusterIP"}
    pdb = json.loads(kubectl(k8s_control_plane, "-n", deployed, "get", "pdb", "rdg-api", "-o", "json"))
    assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "rdg-api"}
    # Every pod runs (kwok) on the node, with requests and limits on every container.
    pods = json.loads(kubectl(k8s_control_plane, "-n", deployed, "get", "pods", "-o", "json"))["items"]
    assert len(pods) == len(expected)
    for p in pods:
        assert p["status"]["phase"] == "Running", p["metadata"]["name"]
        for c in p["spec"]["containers"]:
            assert c["resources"]["requests"] and c["resources"]["limits"], p["metadata"]["name"]


def test_rbac_dagster_manages_deployments_but_reads_no_secret(k8s_control_plane: K8sControlPlane,
                                                              deployed: str) -> None:
    sa = f"system:serviceaccount:{deployed}:rdg-dagster"

    def can(verb: str, what: str, who: str = sa) -> bool:
        out = subprocess.run(["kubectl", f"--kubeconfig={k8s_control_plane.kubeconfig_path}", "auth", "can-i", verb,
                              what, f"--as={who}", "-n", deployed], capture_output=True, text=True, timeout=60)
        return out.stdout.strip() == "yes"

    assert can("patch", "deployments/scale") and can("create", "deployments") and can("delete", "deployments")
    assert can("list", "pods") and can("create", "jobs.batch")
    assert can("get", "configmaps/rdg-deploy-values")
    assert not can("get", "secrets") and not can("list", "secrets") and not can("get", "secrets/rdg-app-credentials")
    assert not can("get", "configmaps/rdg-platform-settings")
    assert not can("list", "pods", f"system:serviceaccount:{deployed}:rdg-streaming")


def test_scale_through_the_dagster_job_is_capped_at_partitions(cfg: Settings, k8s_control_plane: K8sControlPlane,
                                                               deployed: str,
                                                               launcher: StreamingLauncherResource) -> None:
    partitions = partitions_of(cfg.load_spec(), "member.login", cfg.topics_file)
    assert partitions >= 3
    run_job(launcher, "scale_streaming_app", {"app": APP, "replicas": 3})
    wait_ready(k8s_control_plane, deployed, APP_DEPLOYMENT, 3)
    run_job(launcher, "scale_streaming_app", {"app": APP, "replicas": partitions + 20})
    d = wait_ready(k8s_control_plane, deployed, APP_DEPLOYMENT, partitions)
    assert d["spec"]["replicas"] == partitions


def test_reapply_does_not_scale_down(k8s_control_plane: K8sControlPlane, deployed: str) -> None:
    kubectl(k8s_control_plane, "-n", deployed, "scale", "deployment", "rdg-sink-nodes", "--replicas=2")
    kubectl(k8s_control_plane, "-n", deployed, "scale", "deployment", "rdg-api", "--replicas=2")
    wait_ready(k8s_control_plane, deployed, "rdg-sink-nodes", 2)
    before = deployment(k8s_control_plane, deployed, "rdg-sink-nodes")
    assert before is not None
    deploy_cli(k8s_control_plane, deployed)  # the local values say 1 replica for both
    after = deployment(k8s_control_plane, deployed, "rdg-sink-nodes")
    api = deployment(k8s_control_plane, deployed, "rdg-api")
    assert after is not None and api is not None
    assert after["spec"]["replicas"] == 2 and api["spec"]["replicas"] == 2
    assert after["metadata"]["generation"] == before["metadata"]["generation"], "re-apply changed the Deployment"


def _tick(res: StreamingLauncherResource) -> tuple[dict[str, dict[str, Any]], dict[str, bool]]:
    with build_sensor_context(resources={"streaming_launcher": res}) as ctx:
        result = streaming_apps_health_sensor(ctx)
    assert isinstance(result, SensorResult)
    obs = {e.asset_key.path[-1]: {k: v.value for k, v in e.metadata.items()}
           for e in result.asset_events if isinstance(e, AssetObservation)}
    running = {e.asset_key.path[-1]: e.passed for e in result.asset_events
               if isinstance(e, AssetCheckEvaluation) and e.check_name == CHECK_RUNNING}
    return obs, running


def test_stop_restart_and_the_sensor_redeploys_a_deleted_app(cfg: Settings, services: object,
                                                             k8s_control_plane: K8sControlPlane, deployed: str,
                                                             launcher: StreamingLauncherResource) -> None:
    ensure_topics(AdminClient(client_config(cfg.kafka)), cfg.load_spec(), overrides=cfg.topics_file)
    app, name = "sink-edges-member", "rdg-sink-edges-member"
    wait_ready(k8s_control_plane, deployed, name, 1)
    obs, running = _tick(launcher)
    # The sensor sees the pods of each Deployment, and reads lag with the security settings' credentials.
    pod = kubectl(k8s_control_plane, "-n", deployed, "get", "pods", "-l", f"rdg.io/app={app}", "-o",
                  "jsonpath={.items[0].metadata.name}")
    assert obs[app]["pods"] == pod and obs[app]["running"] is True and running[app]
    assert obs[app]["lag_error"] == "" and obs[app]["lag"] >= 0, obs[app]

    # Stop through the job: the Deployment is gone, and the sensor leaves a stopped app alone.
    run_job(launcher, "stop_streaming_apps", {"apps": [app]})
    assert deployment(k8s_control_plane, deployed, name) is None
    obs, running = _tick(launcher)
    assert obs[app]["restarted"] is False and running[app]
    assert deployment(k8s_control_plane, deployed, name) is None

    # Restart through the job: deployed again (restart of a missing app deploys it).
    run_job(launcher, "restart_streaming_app", {"app": app})
    wait_ready(k8s_control_plane, deployed, name, 1)
    # Restart of a running app: a rolling restart (new pod template annotation, pods replaced).
    run_job(launcher, "restart_streaming_app", {"app": app})
    d = deployment(k8s_control_plane, deployed, name)
    assert d is not None and "rdg.io/restartedAt" in d["spec"]["template"]["metadata"]["annotations"]
    wait_ready(k8s_control_plane, deployed, name, 1)

    # Deleted behind Dagster's back (not stopped): the sensor redeploys it.
    kubectl(k8s_control_plane, "-n", deployed, "delete", "deployment", name)
    obs, running = _tick(launcher)
    assert obs[app]["restarted"] is True, obs[app]
    wait_ready(k8s_control_plane, deployed, name, 1)


def test_server_dry_run_of_every_values_file(k8s_control_plane: K8sControlPlane, tmp_path: Path) -> None:
    for values in sorted(VALUES.glob("*.yaml")):
        ns = load_values(values).namespace
        # Namespaced dry-runs need the namespace to exist (the dry run does not create it).
        kubectl(k8s_control_plane, "create", "namespace", ns, check=False)
        res = CliRunner().invoke(cli, ["k8s", "render", "--values", str(values)])
        assert res.exit_code == 0, res.output
        out = kubectl(k8s_control_plane, "apply", "--dry-run=server", "-f", "-", stdin=res.output)
        kinds = [d["kind"] for d in yaml.safe_load_all(res.output) if d]
        assert out.count("(server dry run)") == len(kinds), (values.name, out)


def test_rendered_dagster_instance_loads_in_dagster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered dagster.yaml, against a real Postgres: Dagster builds the instance (storage
    migrated, queued run coordinator) and dagster-k8s accepts the run launcher's config."""
    from dagster import QueuedRunCoordinator
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import PostgresRunStorage

    v = load_values(LOCAL)
    with postgres_server(tmp_path / "pg") as (host, port):
        pg = v.dagster.postgres.model_copy(update={"host": host, "port": port, "db": "postgres", "user": "postgres"})
        v = v.model_copy(update={"dagster": v.dagster.model_copy(update={"postgres": pg})})
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(yaml.safe_dump(dagster_instance(v)))
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused-with-trust-auth")
        instance = DagsterInstance.from_config(str(home))
        try:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
            assert instance.get_runs() == []
            launcher_cfg = yaml.safe_load((home / "dagster.yaml").read_text())["run_launcher"]
            assert (launcher_cfg["module"], launcher_cfg["class"]) == ("dagster_k8s", "K8sRunLauncher")
            result = process_config(K8sRunLauncher.config_type(), launcher_cfg["config"])
            assert result.success, result.errors
        finally:
            instance.dispose()
