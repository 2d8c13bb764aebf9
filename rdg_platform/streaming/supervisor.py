"""Local supervision of the streaming apps: one watchdog process per app, restarts with backoff.

``AppSupervisor(settings).up()`` starts, for each app, a small detached *watchdog* process
(``python -m rdg_platform.streaming supervise <app>``) in its own session. The watchdog runs the app as
its child, appends its output to ``state_dir/logs/<app>.log`` and, when the child dies for any reason
other than a requested stop, restarts it after an exponential backoff (1 s, 2 s, 4 s ... capped at
60 s; reset once a child has run for 60 s). Its state (watchdog pid, child pid, state, restarts, last
exit code) is a JSON file ``state_dir/apps/<app>.json``, rewritten atomically, so ``status()`` and
``down()`` work from any process (the CLI, Dagster, tests). ``down()`` SIGTERMs the watchdog, which
stops the child gracefully (Quix commits its checkpoint on SIGTERM) and SIGKILLs it after a grace
period. Nothing here imports Quix, so Dagster can use it cheaply.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import psutil

from rdg_platform.config import Settings
from rdg_platform.config import settings as load_settings

BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
HEALTHY_AFTER_S = 60.0
STOP_GRACE_S = 20.0


class SupervisorError(RuntimeError):
    """An app could not be started/stopped; the message names the app and its log."""


@dataclass
class AppState:
    """One app as ``rdg apps status`` shows it."""

    name: str
    state: str = "stopped"  # starting | running | backoff | stopping | stopped | dead
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


def _env_from_settings(cfg: Settings) -> dict[str, str]:
    """Children read their settings from RDG_* variables: pass the caller's settings down exactly."""
    out = {"RDG_STATE_DIR": str(cfg.state_dir), "RDG_HOST": cfg.host, "RDG_KEYSPACE": cfg.keyspace}
    for f in fields(cfg):
        if f.name.endswith("_port"):
            out[f"RDG_{f.name.upper()}"] = str(getattr(cfg, f.name))
    return out


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        p = psutil.Process(pid)
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def scrape_metrics(port: int, timeout_s: float = 1.0) -> dict[str, float]:
    """Sum of each metric over its label sets, from an app's Prometheus endpoint ({} if unreachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as resp:
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


class AppSupervisor:
    """Start/stop/inspect the streaming apps of :mod:`rdg_platform.streaming.apps` as local processes."""

    def __init__(self, settings: Settings | None = None, env: Mapping[str, str] | None = None) -> None:
        self.cfg = settings or load_settings()
        self.env_overrides = dict(env or {})
        self.apps_dir = self.cfg.state_dir / "apps"
        self.logs_dir = self.cfg.state_dir / "logs"

    # ------------------------------------------------------------------ registry
    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(_env_from_settings(self.cfg))
        env.update(self.env_overrides)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def app_names(self) -> list[str]:
        from rdg_platform.streaming.apps import StreamingConfig, app_specs

        with _patched_env(self._child_env()):
            return [a.name for a in app_specs(cfg=self.cfg, scfg=StreamingConfig.from_env())]

    def _metrics_ports(self) -> dict[str, int]:
        from rdg_platform.streaming.apps import StreamingConfig, app_specs

        with _patched_env(self._child_env()):
            return {a.name: a.metrics_port for a in app_specs(cfg=self.cfg, scfg=StreamingConfig.from_env())}

    def _select(self, names: Sequence[str] | None) -> list[str]:
        known = self.app_names()
        if not names:
            return known
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SupervisorError(f"unknown app(s) {unknown}; known: {known}")
        return list(names)

    def state_file(self, name: str) -> Path:
        return self.apps_dir / f"{name}.json"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def read_state(self, name: str) -> AppState:
        try:
            raw = json.loads(self.state_file(name).read_text())
            return AppState(**{k: v for k, v in raw.items() if k in AppState.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return AppState(name)

    # ------------------------------------------------------------------ operations
    def up(self, names: Sequence[str] | None = None, wait_s: float = 15.0) -> list[AppState]:
        """Start a watchdog for every selected app not already supervised; returns their states."""
        selected = self._select(names)
        self.apps_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        env = self._child_env()
        started: dict[str, subprocess.Popen[bytes]] = {}
        for name in selected:
            st = self.read_state(name)
            if _alive(st.supervisor_pid):
                continue
            with self.log_file(name).open("ab") as log:
                started[name] = subprocess.Popen(
                    [sys.executable, "-m", "rdg_platform.streaming", "supervise", name],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True, close_fds=True)
        deadline = time.monotonic() + wait_s
        while started and time.monotonic() < deadline:
            dead = [n for n, p in started.items() if p.poll() is not None]
            if dead:
                raise SupervisorError(f"watchdog of {dead} exited; see {[str(self.log_file(n)) for n in dead]}")
            states = {n: self.read_state(n) for n in started}
            if all(s.supervisor_pid == started[n].pid and _alive(s.pid) for n, s in states.items()):
                break
            time.sleep(0.2)
        return self.status(selected)

    def down(self, names: Sequence[str] | None = None, timeout_s: float = STOP_GRACE_S + 10) -> list[AppState]:
        """Stop the selected apps (all by default): SIGTERM the watchdogs and wait for them to exit."""
        selected = self._select(names)
        pids: list[int] = []
        for name in selected:
            st = self.read_state(name)
            if _alive(st.supervisor_pid):
                assert st.supervisor_pid is not None
                os.kill(st.supervisor_pid, signal.SIGTERM)
                pids.append(st.supervisor_pid)
        deadline = time.monotonic() + timeout_s
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        for name in selected:
            st = self.read_state(name)
            if _alive(st.pid):  # watchdog gone but child left behind (watchdog was SIGKILLed)
                assert st.pid is not None
                os.kill(st.pid, signal.SIGKILL)
            if st.state != "stopped":
                st.state, st.running, st.pid, st.supervisor_pid = "stopped", False, None, None
                _write_state(self.state_file(name), st)
        return self.status(selected)

    def status(self, names: Sequence[str] | None = None) -> list[AppState]:
        """State, pid, restarts, consumer lag and input rate (scraped from each app's metrics)."""
        selected = self._select(names)
        ports = self._metrics_ports()
        out = []
        for name in selected:
            st = self.read_state(name)
            st.metrics_port = ports.get(name)
            sup_alive = _alive(st.supervisor_pid)
            st.running = sup_alive and _alive(st.pid)
            if not sup_alive and st.state not in ("stopped",):
                st.state = "dead"
            if st.running and st.metrics_port:
                m = scrape_metrics(st.metrics_port)
                if m:
                    st.lag = m.get("rdg_consumer_lag")
                    st.rate = m.get("rdg_input_rate")
            st.log = str(self.log_file(name))
            out.append(st)
        return out

    def pid(self, name: str) -> int | None:
        """The app process's pid (not the watchdog's), for tests that kill it."""
        st = self.read_state(name)
        return st.pid if _alive(st.pid) else None


class _patched_env:
    """Temporarily apply an environment (the registry reads knobs from os.environ)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.saved: dict[str, str] = {}

    def __enter__(self) -> None:
        self.saved = dict(os.environ)
        os.environ.update(self.env)

    def __exit__(self, *exc: object) -> None:
        os.environ.clear()
        os.environ.update(self.saved)


def _write_state(path: Path, st: AppState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(st.to_dict()))
    os.replace(tmp, path)


def watchdog(name: str) -> int:
    """The watchdog loop (runs in its own process): run the app, restart it with backoff until SIGTERM."""
    cfg = load_settings()
    sup = AppSupervisor(cfg)
    path = sup.state_file(name)
    st = AppState(name, state="starting", supervisor_pid=os.getpid(), log=str(sup.log_file(name)))
    stopping = False
    child: subprocess.Popen[bytes] | None = None

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
        child = subprocess.Popen([sys.executable, "-m", "rdg_platform.streaming", "run", name],
                                 stdin=subprocess.DEVNULL)
        st.pid, st.state, st.started_at = child.pid, "running", time.time()
        _write_state(path, st)
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stopping and time.monotonic() - started > 0 and child.poll() is None:
                    try:
                        code = child.wait(timeout=STOP_GRACE_S)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        code = child.wait()
                    break
        st.last_exit, st.pid = code, None
        if stopping:
            break
        failures = 0 if time.monotonic() - started > HEALTHY_AFTER_S else failures + 1
        st.restarts += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, failures - 1))
        st.state = "backoff"
        _write_state(path, st)
        print(f"[watchdog] {name} exited with {code}; restart #{st.restarts} in {delay:.0f}s", flush=True)
        end = time.monotonic() + delay
        while not stopping and time.monotonic() < end:
            time.sleep(0.1)
    st.state, st.running, st.supervisor_pid = "stopped", False, None
    _write_state(path, st)
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
