"""Launchers for the long-running streaming apps: where and how many copies of each app run.

Pure Python, no Dagster: the Dagster control plane (``rdg_platform.assets.streaming_control``),
``rdg k8s deploy`` and any script can drive them. Two implementations of one :class:`AppLauncher`
protocol:

- :class:`LocalProcessLauncher`: local processes, through the same supervisor ``rdg apps`` uses;
- :class:`KubernetesLauncher`: one Deployment per app (replicas capped at the app's input
  partitions), rendered by :mod:`rdg_platform.launcher.manifests` (the one renderer of every
  Kubernetes object) and server-side applied through the official ``kubernetes`` client.

Consumer lag (:func:`consumer_lag`) is read with bounded Kafka timeouts so a caller on a short tick
(a sensor) never hangs on a broker that is down.
"""

from rdg_platform.launcher.base import AppLauncher, AppStatus, LauncherError
from rdg_platform.launcher.kubernetes import KubernetesLauncher
from rdg_platform.launcher.lag import LagReport, consumer_lag
from rdg_platform.launcher.local import LocalProcessLauncher
from rdg_platform.launcher.manifests import DeployValues, ManifestError, app_deployment, render

__all__ = [
    "AppLauncher",
    "AppStatus",
    "DeployValues",
    "KubernetesLauncher",
    "LagReport",
    "LauncherError",
    "LocalProcessLauncher",
    "ManifestError",
    "app_deployment",
    "consumer_lag",
    "render",
]
