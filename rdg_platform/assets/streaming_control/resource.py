"""StreamingLauncherResource: which launcher runs the streaming apps, and the alerting thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from rdg_platform.launcher.base import AppLauncher
from rdg_platform.settings import KafkaSettings, Settings
from rdg_platform.streaming.apps import AppSpec, app_specs


class StreamingLauncherResource:
    """Deploy/scale/stop the streaming apps as local processes (default) or Kubernetes Deployments.

    A plain object resource (Dagster ``ResourceParam``), built by the Dagster entry point from the
    :class:`Settings` it loaded: the apps, the Kafka connection of the lag reads and the local
    supervisor all come from those settings, and a Dagster config schema could not carry them.

    ``app_resources`` maps an app name to ``{cpu_request, cpu_limit, memory_request, memory_limit,
    replicas}`` (Kubernetes only; per-topic tuning: the playback processor needs more than the
    gaming one). The health sensor uses ``lag_alert_threshold`` (total messages behind, per app),
    ``lag_timeout_s`` (bound on every Kafka call of a tick) and ``restart_dead_apps``.
    """

    def __init__(self, settings: Settings, *, kind: Literal["local", "kubernetes"] = "local",
                 lag_alert_threshold: int = 50_000, lag_timeout_s: float = 3.0, restart_dead_apps: bool = True,
                 namespace: str = "rdg", image: str = "rdg-platform:latest", image_pull_policy: str = "IfNotPresent",
                 service_account: str | None = None, env_config_map: str | None = "rdg-platform-env",
                 env_secret: str | None = None, kubeconfig: str | None = None, kube_context: str | None = None,
                 default_app_resources: Mapping[str, str] | None = None,
                 app_resources: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.settings = settings
        self.kind = kind
        self.lag_alert_threshold = lag_alert_threshold
        self.lag_timeout_s = lag_timeout_s
        self.restart_dead_apps = restart_dead_apps
        self.namespace = namespace
        self.image = image
        self.image_pull_policy = image_pull_policy
        self.service_account = service_account
        self.env_config_map = env_config_map
        self.env_secret = env_secret
        self.kubeconfig = kubeconfig
        self.kube_context = kube_context
        self.default_app_resources = dict(default_app_resources or {})
        self.app_resources = {k: dict(v) for k, v in (app_resources or {}).items()}

    @property
    def kafka(self) -> KafkaSettings:
        """Where the lag reads connect."""
        return self.settings.kafka

    def apps(self) -> list[AppSpec]:
        s = self.settings
        return app_specs(s.load_spec(), s.streaming, s.topics_file)

    def launcher(self) -> AppLauncher:
        if self.kind == "local":
            from rdg_platform.launcher.local import LocalProcessLauncher
            from rdg_platform.streaming.supervisor import AppSupervisor

            sup = AppSupervisor(self.settings)
            return LocalProcessLauncher(sup.apps(), sup)
        from rdg_platform.launcher.kubernetes import AppResources, KubernetesConfig, KubernetesLauncher

        default = AppResources.from_mapping(self.default_app_resources)
        per_app = {name: AppResources.from_mapping(raw, default) for name, raw in self.app_resources.items()}
        kcfg = KubernetesConfig(namespace=self.namespace, image=self.image, image_pull_policy=self.image_pull_policy,
                                service_account=self.service_account, env_from_config_map=self.env_config_map,
                                env_from_secret=self.env_secret, default_resources=default, app_resources=per_app)
        return KubernetesLauncher(self.apps(), kcfg, kubeconfig=self.kubeconfig, context=self.kube_context)
