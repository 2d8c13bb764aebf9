"""Local supervision of the streaming apps: one watchdog process per app, restarts with backoff.

``AppSupervisor(settings).up()`` starts, for each app, a small detached *watchdog* process
(``python -m rdg_platform.streaming supervise <app>``) with :func:`rdg_platform.processes.start_detached`.
The watchdog runs the app as its child, appends its output to ``<state_dir>/logs/<app>.log`` and,
when the child dies for any reason other than a requested stop, restarts it after an exponential
backoff (1 s, 2 s, 4 s ... capped at 60 s; reset once a child has run for 60 s). Both processes get
their environment from ``settings.child_env()``, so they rebuild exactly the supervisor's settings.

State lives in ``<state_dir>/apps/``: ``<app>.pid`` (the watchdog's verified pid record, see
:mod:`rdg_platform.processes`) and ``<app>.json`` (what the watchdog reports: the app process's
record, state, restarts, last exit code), both rewritten atomically, so ``status()`` and ``down()``
work from any process (the CLI, Dagster, tests). ``down()`` SIGTERMs the watchdog, which stops the
child gracefully (Quix commits its checkpoint on SIGTERM) and SIGKILLs it after a grace period.
Nothing here imports Quix, so Dagster can use it cheaply.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rdg_platform.processes import PidFile, ProcessRecord, find, start_detached, stop
from rdg_platform.settings import Settings
from rdg_platform.streaming.apps import AppSpec, app_specs

BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
HEALTHY_AFTER_S = 60.0
STOP_GRACE_S = 20.0
AppStateName = Literal["starting", "running", "backoff", "stopping", "stopped", "dead"]


class SupervisorError(RuntimeError):
    """An app could not be started/stopped; the message names the app and its log."""


@dataclass
class AppState:
    """One app as ``rdg apps status`` shows it."""

    name: str
    state: AppStateName = "stopped"
    running: bool = False
    pid: int | None = None
    supervisor_pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    started_at: float | None = None
    lag: float | None = None
    rate: float | None = None
    metrics_port: int | None = None
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Report:
    """What the watchdog writes to ``<app>.json``: its app process and its restart history."""

    state: AppStateName = "starting"
    child: ProcessRecord | None = None
    restarts: int = 0
    last_exit: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "child": None if self.child is None else self.child.to_json(),
                "restarts": self.restarts, "last_exit": self.last_exit}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _Report:
        child = raw.get("child")
        return cls(raw.get("state", "stopped"), None if child is None else ProcessRecord.from_json(child),
                   int(raw.get("restarts", 0)), raw.get("last_exit"))


def scrape_metrics(port: int, host: str = "127.0.0.1", timeout_s: float = 1.0) -> dict[str, float]:
    """Sum of each metric over its label sets, from an app's Prometheus endpoint ({} if unreachable)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def _connect_host(bind_host: str) -> str:
    return "127.0.0.1" if bind_host in ("0.0.0.0", "::", "") else bind_host


class AppSupervisor:
    """Start/stop/inspect the streaming apps of :mod:`rdg_platform.streaming.apps` as local processes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.apps_dir = settings.state_dir / "apps"
        self.logs_dir = settings.logs_dir

    # ------------------------------------------------------------------ registry
    def apps(self) -> list[AppSpec]:
        s = self.settings
        return app_specs(s.load_spec(), s.streaming, s.topics_file)

    def app_names(self) -> list[str]:
        return [a.name for a in self.apps()]

    def _select(self, names: Sequence[str] | None) -> list[str]:
        known = self.app_names()
        if not names:
            return known
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SupervisorError(f"unknown app(s) {unknown}; known: {known}")
        return list(names)

    def pid_file(self, name: str) -> PidFile:
        """The watchdog's pid record."""
        return PidFile(self.apps_dir / f"{name}.pid")

    def report_file(self, name: str) -> Path:
        return self.apps_dir / f"{name}.json"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _watchdog_cmd(self, name: str) -> list[str]:
        # The state dir as an (inert) argument marks this instance: see rdg_platform.processes.
        return [sys.executable, "-m", "rdg_platform.streaming", "supervise", name, self._marker()]

    def _marker(self) -> str:
        return f"--instance={self.settings.state_dir}"

    def _read_report(self, name: str) -> _Report:
        try:
            return _Report.from_json(json.loads(self.report_file(name).read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            return _Report("stopped")

    def _write_report(self, name: str, report: _Report) -> None:
        path = self.report_file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(report.to_json()))
        os.replace(tmp, path)

    def read_state(self, name: str) -> AppState:
        """The app's state from its files, checked against the live processes."""
        watchdog = self.pid_file(name).read()
        wd_alive = find(watchdog) is not None
        rep = self._read_report(name)
        child_alive = wd_alive and find(rep.child) is not None
        state: AppStateName = rep.state if wd_alive or rep.state == "stopped" else "dead"
        return AppState(name, state=state, running=child_alive,
                        pid=rep.child.pid if child_alive and rep.child else None,
                        supervisor_pid=watchdog.pid if wd_alive and watchdog else None,
                        restarts=rep.restarts, last_exit=rep.last_exit,
                        started_at=rep.child.started_at if rep.child else None, log=str(self.log_file(name)))

    # ------------------------------------------------------------------ operations
    def up(self, names: Sequence[str] | None = None, wait_s: float = 15.0) -> list[AppState]:
        """Start a watchdog for every selected app not already supervised; returns their states."""
        selected = self._select(names)
        env = {**self.settings.child_env(), "PYTHONUNBUFFERED": "1"}
        started: dict[str, subprocess.Popen[bytes]] = {}
        for name in selected:
            if self.pid_file(name).process() is not None:
                continue
            self._write_report(name, _Report("starting"))
            started[name] = start_detached(self._watchdog_cmd(name), log_file=self.log_file(name), env=env,
                                           markers=[name, self._marker()], pid_file=self.pid_file(name)).popen
        deadline = time.monotonic() + wait_s
        while started and time.monotonic() < deadline:
            dead = [n for n, p in started.items() if p.poll() is not None]
            if dead:
                raise SupervisorError(f"watchdog of {dead} exited; see {[str(self.log_file(n)) for n in dead]}")
            if all(self.read_state(n).running for n in started):
                break
            time.sleep(0.2)
        return self.status(selected)

    def down(self, names: Sequence[str] | None = None, grace_s: float = STOP_GRACE_S + 10) -> list[AppState]:
        """Stop the selected apps (all by default): SIGTERM the watchdogs (each stops its app, which
        commits its checkpoint), SIGKILL what is still running after ``grace_s``."""
        selected = self._select(names)
        watchdogs = [p for p in (self.pid_file(n).process() for n in selected) if p is not None]
        stop(watchdogs, grace_s=grace_s, group=False)  # the watchdog stops its own child
        for name in selected:
            rep = self._read_report(name)
            child = find(rep.child)
            if child is not None:  # the watchdog was SIGKILLed and left its app behind
                stop([child], grace_s=STOP_GRACE_S, group=False)
            if rep.state != "stopped" or rep.child is not None:
                self._write_report(name, _Report("stopped", None, rep.restarts, rep.last_exit))
            self.pid_file(name).remove()
        return self.status(selected)

    def status(self, names: Sequence[str] | None = None) -> list[AppState]:
        """State, pid, restarts, consumer lag and input rate (scraped from each app's metrics)."""
        selected = self._select(names)
        ports = {a.name: a.metrics_port for a in self.apps()}
        host = _connect_host(self.settings.streaming.metrics_bind_host)
        out = []
        for name in selected:
            st = self.read_state(name)
            st.metrics_port = ports.get(name)
            if st.running and st.metrics_port:
                m = scrape_metrics(st.metrics_port, host)
                if m:
                    st.lag = m.get("rdg_consumer_lag")
                    st.rate = m.get("rdg_input_rate")
            out.append(st)
        return out

    def pid(self, name: str) -> int | None:
        """The app process's pid (not the watchdog's), for tests that kill it."""
        return self.read_state(name).pid


def watchdog(settings: Settings, name: str) -> int:
    """The watchdog loop (runs in its own process): run the app, restart it with backoff until SIGTERM."""
    sup = AppSupervisor(settings)
    report = _Report("starting", None, 0, None)
    stopping = False
    child: subprocess.Popen[bytes] | None = None
    env = {**settings.child_env(), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "rdg_platform.streaming", "run", name]

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    failures = 0
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=env)
        report.child, report.state = ProcessRecord.of(child.pid, [name]), "running"
        sup._write_report(name, report)
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stopping and child.poll() is None:
                    try:
                        code = child.wait(timeout=STOP_GRACE_S)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        code = child.wait()
                    break
        report.last_exit, report.child = code, None
        if stopping:
            break
        failures = 0 if time.monotonic() - started > HEALTHY_AFTER_S else failures + 1
        report.restarts += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, failures - 1))
        report.state = "backoff"
        sup._write_report(name, report)
        print(f"[watchdog] {name} exited with {code}; restart #{report.restarts} in {delay:.0f}s", flush=True)
        end = time.monotonic() + delay
        while not stopping and time.monotonic() < end:
            time.sleep(0.1)
    report.state = "stopped"
    sup._write_report(name, report)
    return 0


def format_status(states: Sequence[AppState]) -> str:
    """A fixed-width table for the CLI."""
    rows = [("APP", "STATE", "PID", "RESTARTS", "LAG", "IN/S", "METRICS")]
    for s in states:
        rows.append((s.name, s.state, str(s.pid or "-"), str(s.restarts),
                     "-" if s.lag is None else f"{s.lag:.0f}", "-" if s.rate is None else f"{s.rate:.1f}",
                     f":{s.metrics_port}" if s.metrics_port else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
