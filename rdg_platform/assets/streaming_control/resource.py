"""StreamingLauncherResource: which launcher runs the streaming apps, and the alerting thresholds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from dagster import ConfigurableResource
from pydantic import Field

from rdg_platform.config import settings
from rdg_platform.launcher.base import AppInfo, AppLauncher
from rdg_platform.model.spec import GraphSpec


class StreamingLauncherResource(ConfigurableResource):  # type: ignore[misc]
    """Deploy/scale/stop the streaming apps as local processes (default) or Kubernetes Deployments.

    ``app_resources`` maps an app name to ``{cpu_request, cpu_limit, memory_request, memory_limit,
    replicas}`` (Kubernetes only; per-topic tuning: the playback processor needs more than the
    gaming one). The health sensor uses ``lag_alert_threshold`` (total messages behind, per app),
    ``lag_timeout_s`` (bound on every Kafka call of a tick) and ``restart_dead_apps``.
    """

    kind: Literal["local", "kubernetes"] = "local"
    bootstrap_servers: str | None = Field(default=None, description="Kafka for lag reads; default RDG_* settings")
    spec_path: str | None = Field(default=None, description="model spec YAML; default the packaged one")
    lag_alert_threshold: int = Field(default=50_000, description="alert when an app is this many messages behind")
    lag_timeout_s: float = Field(default=3.0, description="deadline of one app's lag read")
    restart_dead_apps: bool = True
    state_dir: str | None = Field(default=None, description="local launcher: supervisor state dir (RDG_STATE_DIR)")
    # Kubernetes
    namespace: str = "rdg"
    image: str = "rdg-platform:latest"
    image_pull_policy: str = "IfNotPresent"
    service_account: str | None = None
    env_config_map: str | None = "rdg-platform-env"
    env_secret: str | None = Field(default=None, description="Secret with credentials, as env vars")
    kubeconfig: str | None = None
    kube_context: str | None = None
    default_app_resources: dict[str, str] = Field(default_factory=dict)
    app_resources: dict[str, dict[str, str]] = Field(default_factory=dict)

    def spec(self) -> GraphSpec:
        from rdg_platform.model.spec import load_spec

        return load_spec(self.spec_path)

    def bootstrap(self) -> str:
        return self.bootstrap_servers or settings().kafka_bootstrap

    def app_infos(self) -> list[AppInfo]:
        from rdg_platform.assets.streaming_control.registry import load_apps

        return load_apps(self.spec())

    def launcher(self) -> AppLauncher:
        apps = self.app_infos()
        if self.kind == "local":
            from rdg_platform.launcher.local import LocalProcessLauncher

            cfg = settings()
            if self.state_dir:
                cfg = dataclasses.replace(cfg, state_dir=Path(self.state_dir))
            return LocalProcessLauncher(apps, cfg)
        from rdg_platform.launcher.kubernetes import AppResources, KubernetesConfig, KubernetesLauncher

        default = AppResources.from_mapping(self.default_app_resources)
        per_app = {name: AppResources.from_mapping(raw, default) for name, raw in self.app_resources.items()}
        kcfg = KubernetesConfig(namespace=self.namespace, image=self.image, image_pull_policy=self.image_pull_policy,
                                service_account=self.service_account, env_from_config_map=self.env_config_map,
                                env_from_secret=self.env_secret, default_resources=default, app_resources=per_app)
        return KubernetesLauncher(apps, kcfg, kubeconfig=self.kubeconfig, context=self.kube_context)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespace": self.namespace if self.kind == "kubernetes" else None}
