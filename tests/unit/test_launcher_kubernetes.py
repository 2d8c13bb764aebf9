"""Kubernetes launcher rules that need no cluster: an app's Deployment (replicas capped at partitions,
per-app resources), names, the re-apply replica rule, app selection and what counts as dead.
tests/integration/test_k8s_deploy.py runs the launcher against a real API server."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdg_platform.launcher.base import AppStatus, LauncherError, cap_replicas, select_apps
from rdg_platform.launcher.kubernetes import KubernetesLauncher, preserve_replicas
from rdg_platform.launcher.manifests import AppValues, app_deployment, deployment_name, load_values
from rdg_platform.streaming.apps import AppSpec

ROOT = Path(__file__).resolve().parents[2]
APPS = [AppSpec("member_playback-processor", "processor", ("member.playback",), "rdg-proc-playback", partitions=4,
                metrics_port=9301),
        AppSpec("member_gaming-processor", "processor", ("member.gaming",), "rdg-proc-gaming", partitions=2,
                metrics_port=9302),
        AppSpec("sink-nodes", "sink", ("graph.node.account",), "rdg-sink", partitions=3, metrics_port=9305)]


def _values() -> object:
    v = load_values(ROOT / "deploy" / "values" / "local.yaml")
    apps = v.streaming_apps.model_copy(update={
        "default": AppValues(replicas=10),
        "per_app": {"member_playback-processor": AppValues(cpu_request="1", cpu_limit="2", memory_request="1Gi",
                                                            memory_limit="2Gi", replicas=3)}})
    return v.model_copy(update={"streaming_apps": apps, "namespace": "rdg-test"})


def test_replicas_capped_at_partitions_and_resources_per_app() -> None:
    v = _values()
    dep = {a.name: app_deployment(v, a) for a in APPS}  # type: ignore[arg-type]
    assert dep["member_playback-processor"]["spec"]["replicas"] == 3
    assert dep["member_gaming-processor"]["spec"]["replicas"] == 2  # 10 asked, 2 partitions
    assert dep["sink-nodes"]["spec"]["replicas"] == 3
    c = dep["member_playback-processor"]["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    assert c["ports"] == [{"name": "metrics", "containerPort": 9301, "protocol": "TCP"}]
    assert dep["sink-nodes"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "-m", "rdg_platform.streaming", "run", "sink-nodes"]
    for d in dep.values():
        assert d["metadata"]["namespace"] == "rdg-test"
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()


def test_explicit_replicas_and_names() -> None:
    v = _values()
    assert app_deployment(v, APPS[0], replicas=99)["spec"]["replicas"] == 4  # type: ignore[arg-type]
    assert app_deployment(v, APPS[0], replicas=0)["spec"]["replicas"] == 0  # type: ignore[arg-type]
    assert deployment_name("member_playback-processor") == "rdg-member-playback-processor"
    with pytest.raises(LauncherError):
        cap_replicas(APPS[0], -1)


def test_reapply_keeps_replicas() -> None:
    app = app_deployment(_values(), APPS[0])  # type: ignore[arg-type]  # 3 rendered, 4 partitions
    assert preserve_replicas(app, None)["spec"]["replicas"] == 3  # new: the values' count
    assert preserve_replicas(app, 1)["spec"]["replicas"] == 1  # scaled down by Dagster: kept
    assert preserve_replicas(app, 0)["spec"]["replicas"] == 0  # scaled to zero: kept
    assert preserve_replicas(app, 4)["spec"]["replicas"] == 4
    assert preserve_replicas(app, 9)["spec"]["replicas"] == 4  # never above the partitions
    api = {"kind": "Deployment", "metadata": {"name": "rdg-api", "labels": {}}, "spec": {"replicas": 2}}
    assert preserve_replicas(api, 5)["spec"]["replicas"] == 5  # never scaled back
    assert preserve_replicas(api, 1)["spec"]["replicas"] == 2  # values raise it
    assert app["spec"]["replicas"] == 3, "the input is not modified"


def test_select_apps_rejects_unknown_names() -> None:
    assert [a.name for a in select_apps(APPS, None)] == [a.name for a in APPS]
    with pytest.raises(LauncherError, match="unknown app"):
        select_apps(APPS, ["nope"])
    with pytest.raises(LauncherError):
        KubernetesLauncher("rdg-test", values=_values(), client=object()).manifests(["nope"])  # type: ignore[arg-type]


def test_launcher_renders_what_deploy_renders() -> None:
    """The launcher's Deployment of an app is the renderer's, byte for byte (one renderer)."""
    from rdg_platform.launcher.manifests import render

    v = load_values(ROOT / "deploy" / "values" / "prod.yaml")
    rendered = {o["metadata"]["name"]: o for o in render(v) if o["kind"] == "Deployment"}
    launcher = KubernetesLauncher(v.namespace, values=v, client=object())
    for m in launcher.manifests():
        assert m == rendered[m["metadata"]["name"]]


def test_status_dead_means_expected_but_not_running() -> None:
    assert AppStatus("a", running=False, expected=True).dead
    assert not AppStatus("a", running=False, expected=False).dead
    assert not AppStatus("a", running=True, replicas=1, expected=True).dead
    assert AppStatus("a", running=True, replicas=1, desired_replicas=1).healthy
    assert not AppStatus("a", running=False, expected=True, recovering=True).dead
    assert AppStatus("a", running=True, pods=["p1", "p2"]).to_metadata()["pods"] == "p1,p2"


def test_app_metrics_server_answers_the_probe_path() -> None:
    """The apps' Deployments probe /healthz on the metrics port: it answers ok, /metrics stays metrics."""
    import httpx

    from rdg_platform.local_services.base import free_ports
    from rdg_platform.streaming.metrics import AppMetrics

    (port,) = free_ports(1)
    m = AppMetrics("probe-test")
    m.serve(port)
    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert health.status_code == 200 and health.text == "ok\n"
    assert "rdg_records_in_total" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
