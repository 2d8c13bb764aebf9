"""Local launcher: the same process supervisor ``rdg apps`` uses, behind the launcher protocol.

The supervisor (:class:`rdg_platform.streaming.supervisor.AppSupervisor`) owns the processes, their
pid files and logs; this class only adapts its calls and states to :class:`AppStatus`, so Dagster
and ``rdg apps`` never disagree about what is running. The supervisor imports no Quix, so building
this launcher (at Dagster definition load) stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

from rdg_platform.launcher.base import AppStatus, LauncherError, cap_replicas, select_apps
from rdg_platform.streaming.apps import AppSpec
from rdg_platform.streaming.supervisor import AppState, AppSupervisor, SupervisorError


class LocalProcessLauncher:
    kind = "local"

    def __init__(self, apps: Sequence[AppSpec], supervisor: AppSupervisor) -> None:
        self._apps = list(apps)
        self.supervisor = supervisor

    def apps(self) -> list[AppSpec]:
        return list(self._apps)

    def _names(self, names: Sequence[str] | None) -> list[str]:
        return [a.name for a in select_apps(self._apps, names)]

    def deploy(self, names: Sequence[str] | None = None) -> list[AppStatus]:
        wanted = self._names(names)
        try:
            self.supervisor.up(wanted)
        except SupervisorError as exc:  # carries the app and its log path
            raise LauncherError(f"starting {wanted} failed: {exc}") from exc
        return [s for s in self.status() if s.name in wanted]

    def stop(self, names: Sequence[str] | None = None) -> list[AppStatus]:
        wanted = self._names(names)
        try:
            self.supervisor.down(wanted)
        except SupervisorError as exc:
            raise LauncherError(f"stopping {wanted} failed: {exc}") from exc
        return [s for s in self.status() if s.name in wanted]

    def restart(self, name: str) -> AppStatus:
        self.stop([name])
        self.deploy([name])
        return self._one(name)

    def scale(self, name: str, replicas: int) -> AppStatus:
        """Local apps run as one process each (Quix Streams parallelism is by partitions across
        replicas, which only Kubernetes provides here): 0 stops the app, >= 1 runs it."""
        (app,) = select_apps(self._apps, [name])
        if cap_replicas(app, replicas) == 0:
            self.stop([name])
        else:
            self.deploy([name])
        return self._one(name)

    def _one(self, name: str) -> AppStatus:
        for s in self.status():
            if s.name == name:
                return s
        return AppStatus(name, running=False, detail="unknown to the supervisor")

    def status(self) -> list[AppStatus]:
        known = {a.name for a in self._apps}
        by_name = {s.name: to_status(s) for s in self.supervisor.status() if s.name in known}
        return [by_name.get(a.name, AppStatus(a.name, running=False, detail="not started")) for a in self._apps]


def to_status(st: AppState) -> AppStatus:
    """One supervisor :class:`AppState` as an :class:`AppStatus`.

    Supervisor states: ``running``; ``starting``/``backoff`` (its watchdog is (re)starting the app:
    recovering, not dead); ``stopping``/``stopped`` (asked to stop: not expected); ``dead`` (the
    watchdog itself is gone without a stop: only the control plane can bring it back).
    """
    detail: str = st.state
    if st.restarts:
        detail += f", {st.restarts} restarts by its watchdog"
    if st.last_exit is not None:
        detail += f", last exit {st.last_exit}"
    stopped = st.state in ("stopped", "stopping")
    return AppStatus(st.name, running=st.running, replicas=1 if st.running else 0,
                     desired_replicas=0 if stopped else 1, pids=[st.pid] if st.pid and st.running else [],
                     detail=detail, expected=not stopped, recovering=st.state in ("starting", "backoff"))
