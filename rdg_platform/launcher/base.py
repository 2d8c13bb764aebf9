"""The launcher protocol and the value types every launcher speaks.

An app is described by :class:`rdg_platform.streaming.apps.AppSpec` (the streaming registry's own
type); a launcher reports its health as :class:`AppStatus`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rdg_platform.streaming.apps import AppSpec


class LauncherError(RuntimeError):
    """A deploy/scale/stop could not be carried out (unknown app, API error, supervisor error)."""


@dataclass
class AppStatus:
    """Health of one app as a launcher sees it (becomes Dagster observation metadata)."""

    name: str
    running: bool
    replicas: int = 0
    desired_replicas: int = 0
    pids: list[int] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)  # Kubernetes: the app's pods
    detail: str = ""
    expected: bool = False  # the launcher was asked to run it (a stopped app is not expected)
    recovering: bool = False  # not running, but its own supervisor is already bringing it back

    @property
    def healthy(self) -> bool:
        return self.running and self.replicas >= max(1, self.desired_replicas)

    @property
    def dead(self) -> bool:
        """Should be running, is not, and nothing is restarting it: what the health sensor restarts."""
        return self.expected and not self.running and not self.recovering

    def to_metadata(self) -> dict[str, Any]:
        return {"running": self.running, "healthy": self.healthy, "replicas": self.replicas,
                "desired_replicas": self.desired_replicas, "expected": self.expected,
                "recovering": self.recovering, "pids": ",".join(map(str, self.pids)),
                "pods": ",".join(self.pods),
                "detail": self.detail}


@runtime_checkable
class AppLauncher(Protocol):
    """Deploy, scale, stop and inspect streaming apps. ``names=None`` means every app."""

    kind: str

    def apps(self) -> list[AppSpec]: ...

    def deploy(self, names: Sequence[str] | None = None) -> list[AppStatus]: ...

    def scale(self, name: str, replicas: int) -> AppStatus: ...

    def stop(self, names: Sequence[str] | None = None) -> list[AppStatus]: ...

    def status(self) -> list[AppStatus]: ...

    def restart(self, name: str) -> AppStatus: ...


def select_apps(known: Sequence[AppSpec], names: Sequence[str] | None) -> list[AppSpec]:
    """The apps named (all when ``names`` is empty/None); an unknown name is an error, not a no-op."""
    if not names:
        return list(known)
    by_name = {a.name: a for a in known}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise LauncherError(f"unknown app(s) {unknown}; known: {sorted(by_name)}")
    return [by_name[n] for n in names]


def cap_replicas(app: AppSpec, replicas: int) -> int:
    """Replicas a launcher will actually run: 0..partitions (a consumer per partition at most)."""
    if replicas < 0:
        raise LauncherError(f"replicas must be >= 0, got {replicas}")
    return min(replicas, max(1, app.partitions))
