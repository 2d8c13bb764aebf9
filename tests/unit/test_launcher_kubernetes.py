"""KubernetesLauncher manifests: replicas capped at partitions, per-app resources, valid objects."""

from __future__ import annotations

import kubernetes_validate
import pytest

from rdg_platform.launcher.base import AppStatus, LauncherError, cap_replicas, select_apps
from rdg_platform.launcher.kubernetes import (
    AppResources,
    KubernetesConfig,
    KubernetesLauncher,
    build_deployment,
    deployment_name,
)
from rdg_platform.streaming.apps import AppSpec

APPS = [AppSpec("member_playback_processor", "processor", ("member.playback",), "rdg-proc-playback", partitions=4),
        AppSpec("member_gaming_processor", "processor", ("member.gaming",), "rdg-proc-gaming", partitions=2),
        AppSpec("graph_sink", "sink", ("graph.node.account",), "rdg-sink", partitions=3)]


def _cfg() -> KubernetesConfig:
    return KubernetesConfig(namespace="rdg-test", image="rdg:1", default_resources=AppResources(replicas=10),
                            app_resources={"member_playback_processor": AppResources("1", "2", "1Gi", "2Gi", 3)})


def test_replicas_capped_at_partitions_and_resources_per_app() -> None:
    dep = {a.name: build_deployment(a, _cfg()) for a in APPS}
    assert dep["member_playback_processor"]["spec"]["replicas"] == 3
    assert dep["member_gaming_processor"]["spec"]["replicas"] == 2  # 10 requested, 2 partitions
    assert dep["graph_sink"]["spec"]["replicas"] == 3
    c = dep["member_playback_processor"]["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    g = dep["member_gaming_processor"]["spec"]["template"]["spec"]["containers"][0]
    assert g["resources"]["requests"] == {"cpu": "250m", "memory": "512Mi"}
    assert dep["graph_sink"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "-m", "rdg_platform.streaming", "run", "graph_sink"]
    for d in dep.values():
        kubernetes_validate.validate(d, "1.37.0", strict=True)
        assert d["metadata"]["namespace"] == "rdg-test"
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()


def test_explicit_replicas_and_names() -> None:
    assert build_deployment(APPS[0], _cfg(), replicas=99)["spec"]["replicas"] == 4
    assert build_deployment(APPS[0], _cfg(), replicas=0)["spec"]["replicas"] == 0
    assert deployment_name("member_playback_processor") == "rdg-member-playback-processor"
    with pytest.raises(LauncherError):
        cap_replicas(APPS[0], -1)


def test_select_apps_rejects_unknown_names() -> None:
    assert [a.name for a in select_apps(APPS, None)] == [a.name for a in APPS]
    with pytest.raises(LauncherError, match="unknown app"):
        select_apps(APPS, ["nope"])
    with pytest.raises(LauncherError):
        KubernetesLauncher(APPS, _cfg()).manifests(["nope"])


def test_status_dead_means_expected_but_not_running() -> None:
    assert AppStatus("a", running=False, expected=True).dead
    assert not AppStatus("a", running=False, expected=False).dead
    assert not AppStatus("a", running=True, replicas=1, expected=True).dead
    assert AppStatus("a", running=True, replicas=1, desired_replicas=1).healthy
    assert not AppStatus("a", running=False, expected=True, recovering=True).dead
