"""StreamingLauncherResource: which launcher runs the streaming apps, and the alerting thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from rdg_platform.launcher.base import AppLauncher
from rdg_platform.settings import KafkaSettings, Settings
from rdg_platform.streaming.apps import AppSpec, app_specs


class StreamingLauncherResource:
    """Deploy/scale/stop the streaming apps as local processes (default) or Kubernetes Deployments.

    A plain object resource (Dagster ``ResourceParam``), built by the Dagster entry point from the
    :class:`Settings` it loaded: the apps, the Kafka connection of the lag reads (with the security
    settings' credentials, through :func:`rdg_platform.kafka_client.client_config`) and the local
    supervisor all come from those settings, and a Dagster config schema could not carry them.

    ``kind="kubernetes"``: the apps are Deployments in ``namespace`` (default ``RDG_K8S_NAMESPACE``)
    of the cluster reached through ``kubeconfig`` (default ``RDG_K8S_KUBECONFIG``, else in-cluster,
    else ~/.kube/config); their manifests are rendered from the values ``rdg k8s deploy`` stored there.
    The health sensor uses ``lag_alert_threshold`` (total messages behind, per app), ``lag_timeout_s``
    (bound on every Kafka call of a tick) and ``restart_dead_apps``.
    """

    def __init__(self, settings: Settings, *, kind: Literal["local", "kubernetes"] = "local",
                 lag_alert_threshold: int = 50_000, lag_timeout_s: float = 3.0, restart_dead_apps: bool = True,
                 namespace: str | None = None, kubeconfig: Path | str | None = None,
                 kube_context: str | None = None) -> None:
        self.settings = settings
        self.kind = kind
        self.lag_alert_threshold = lag_alert_threshold
        self.lag_timeout_s = lag_timeout_s
        self.restart_dead_apps = restart_dead_apps
        self.namespace = namespace or settings.k8s.namespace
        self.kubeconfig = kubeconfig if kubeconfig is not None else settings.k8s.kubeconfig
        self.kube_context = kube_context
        self._launcher: AppLauncher | None = None

    @property
    def kafka(self) -> KafkaSettings:
        """Where the lag reads connect, with the credentials of these settings."""
        return self.settings.kafka

    def apps(self) -> list[AppSpec]:
        s = self.settings
        return app_specs(s.load_spec(), s.streaming, s.topics_file)

    def launcher(self) -> AppLauncher:
        if self._launcher is not None:
            return self._launcher
        if self.kind == "local":
            from rdg_platform.launcher.local import LocalProcessLauncher
            from rdg_platform.streaming.supervisor import AppSupervisor

            sup = AppSupervisor(self.settings)
            return LocalProcessLauncher(sup.apps(), sup)
        from rdg_platform.launcher.kubernetes import KubernetesLauncher

        # One launcher (and one API client) per resource: the sensor ticks every 15 s.
        self._launcher = KubernetesLauncher(self.namespace, self.kubeconfig, self.kube_context)
        return self._launcher
