"""Local launcher: the same process supervisor ``rdg apps`` uses, behind the launcher protocol.

The supervisor (``rdg_platform.streaming.supervisor.AppSupervisor``) owns the processes, their pid
files and logs; this class only adapts its calls and status to :class:`AppStatus`, so Dagster and
``rdg apps`` never disagree about what is running. Imported lazily: building the launcher (at
Dagster definition load) must not import the streaming stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rdg_platform.config import Settings
from rdg_platform.config import settings as load_settings
from rdg_platform.launcher.base import AppInfo, AppStatus, LauncherError, cap_replicas, select_apps


class LocalProcessLauncher:
    kind = "local"

    def __init__(self, apps: Sequence[AppInfo], cfg: Settings | None = None, supervisor: Any | None = None) -> None:
        self._apps = list(apps)
        self._cfg = cfg
        self._sup = supervisor

    @property
    def supervisor(self) -> Any:
        if self._sup is None:
            from rdg_platform.streaming.supervisor import AppSupervisor

            self._sup = AppSupervisor(self._cfg or load_settings())
        return self._sup

    def apps(self) -> list[AppInfo]:
        return list(self._apps)

    def _names(self, names: Sequence[str] | None) -> list[str]:
        return [a.name for a in select_apps(self._apps, names)]

    def deploy(self, names: Sequence[str] | None = None) -> list[AppStatus]:
        wanted = self._names(names)
        try:
            self.supervisor.up(wanted)
        except Exception as exc:  # the supervisor's own errors carry the app and log path
            raise LauncherError(f"starting {wanted} failed: {exc}") from exc
        return [s for s in self.status() if s.name in wanted]

    def stop(self, names: Sequence[str] | None = None) -> list[AppStatus]:
        wanted = self._names(names)
        try:
            self.supervisor.down(wanted)
        except Exception as exc:
            raise LauncherError(f"stopping {wanted} failed: {exc}") from exc
        return [s for s in self.status() if s.name in wanted]

    def restart(self, name: str) -> AppStatus:
        self._names([name])
        self.supervisor.down([name])
        self.supervisor.up([name])
        return self._one(name)

    def scale(self, name: str, replicas: int) -> AppStatus:
        """Local apps run as one process each (Quix Streams parallelism is by partitions across
        replicas, which only Kubernetes provides here): 0 stops the app, >= 1 runs it."""
        (app,) = select_apps(self._apps, [name])
        n = cap_replicas(app, replicas)
        if n == 0:
            self.stop([name])
        else:
            scale = getattr(self.supervisor, "scale", None)
            if callable(scale):
                scale(name, n)
            else:
                self.deploy([name])
        return self._one(name)

    def _one(self, name: str) -> AppStatus:
        for s in self.status():
            if s.name == name:
                return s
        return AppStatus(name, running=False, detail="unknown to the supervisor")

    def status(self) -> list[AppStatus]:
        raw = self.supervisor.status()
        by_name = {s.name: s for s in (_to_status(r) for r in _iter_status(raw))}
        return [by_name.get(a.name, AppStatus(a.name, running=False, detail="not started")) for a in self._apps]


def _iter_status(raw: Any) -> list[Any]:
    if isinstance(raw, dict):
        return [v if not isinstance(v, dict) else {"name": k, **v} for k, v in raw.items()]
    return list(raw)


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


def _to_status(r: Any) -> AppStatus:
    """Adapt one supervisor ``AppState`` (or an equivalent dict) to :class:`AppStatus`.

    Supervisor states: ``running``; ``starting``/``backoff`` (its watchdog is (re)starting the app:
    recovering, not dead); ``stopping``/``stopped`` (asked to stop: not expected); ``dead`` (the
    watchdog itself is gone without a stop: only the control plane can bring it back).
    """
    name = str(_get(r, "name", "app"))
    pid = _get(r, "pid")
    running = bool(_get(r, "running", default=False))
    state = str(_get(r, "state", default="running" if running else "stopped"))
    detail = state
    restarts = _get(r, "restarts")
    if restarts:
        detail += f", {restarts} restarts by its watchdog"
    if _get(r, "last_exit") is not None:
        detail += f", last exit {_get(r, 'last_exit')}"
    st = AppStatus(name, running=running, replicas=1 if running else 0,
                   desired_replicas=0 if state in ("stopped", "stopping") else 1,
                   pids=[int(pid)] if pid and running else [], detail=detail,
                   expected=state not in ("stopped", "stopping"), recovering=state in ("starting", "backoff"))
    return st


def supervisor_lag(r: Any) -> float | None:
    """The lag the app itself exports (scraped by the supervisor), when it is running."""
    lag = _get(r, "lag")
    return None if lag is None else float(lag)
