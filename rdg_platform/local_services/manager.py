"""Start, stop and inspect the local services as detached JVM processes.

The manager only ever touches processes it started: each start writes a pid file recording the pid,
the process create time and our marker arguments, and every later action re-checks all three with
psutil before trusting (or signalling) that pid. That keeps ``down`` safe on a machine where other
developers run their own instances with the same binaries.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from rdg_platform.local_services import fetch
from rdg_platform.local_services.base import Probe, Service, file_lock, port_is_free, port_owner, tail
from rdg_platform.local_services.cassandra import CassandraService
from rdg_platform.local_services.kafka import KafkaService
from rdg_platform.local_services.registry import RegistryService
from rdg_platform.local_services.s3proxy import S3ProxyService
from rdg_platform.processes import PidFile, ProcessRecord, find, start_detached, stop, why_not
from rdg_platform.settings import Settings

# Start order: the slowest to boot first so the others start while it warms up.
SERVICE_NAMES: tuple[str, ...] = ("cassandra", "registry", "kafka", "s3proxy")
# What a bare `up`/`status` covers. S3Proxy (the s3:// warehouse) is started when named (--only s3proxy)
# until its port is a setting that isolated instances can move; a bare `down` stops it if it runs.
DEFAULT_SERVICES: tuple[str, ...] = ("cassandra", "registry", "kafka")
DEFAULT_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 45.0
MIN_FREE_DISK_BYTES = 2 * 1024**3

Echo = Callable[[str], None]


class ServiceError(RuntimeError):
    """A service could not be started or is unhealthy; the message says why and shows its log."""


@dataclass
class ServiceStatus:
    """One row of ``rdg services status``."""

    name: str
    state: str  # running | starting | unhealthy | stopped
    pid: int | None
    port: int
    version: str | None
    healthy: bool
    detail: str = ""
    log: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _quiet(_: str) -> None:
    """Echo sink for callers (tests) that do not want progress output."""


class ServiceManager:
    """Orchestrates the local Kafka, Cassandra and schema registry for one state directory."""

    def __init__(self, settings: Settings, echo: Echo = _quiet) -> None:
        self.settings = settings
        self.echo = echo
        self.services: dict[str, Service] = {
            "cassandra": CassandraService(self.settings),
            "registry": RegistryService(self.settings),
            "kafka": KafkaService(self.settings),
            "s3proxy": S3ProxyService(self.settings),
        }

    # -- paths & pid files ---------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.settings.state_dir / "run"

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def _select(self, services: Iterable[str] | None) -> list[str]:
        if services is None:
            return list(DEFAULT_SERVICES)
        chosen = [s.strip() for s in services if s.strip()]
        unknown = sorted(set(chosen) - set(SERVICE_NAMES))
        if unknown:
            raise ValueError(
                f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICE_NAMES)}"
            )
        return [name for name in SERVICE_NAMES if name in chosen]

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One up/down at a time per state dir (pytest-xdist workers may all call up())."""
        with file_lock(self.run_dir / ".lock"):
            yield

    def _record(self, name: str) -> ProcessRecord | None:
        """The pid file's record, checked against this instance's markers (service name and state
        dir) whatever the file says, so a recycled pid is never taken for our service."""
        record = PidFile(self._pid_file(name)).read()
        if record is None:
            return None
        return ProcessRecord(record.pid, record.create_time, tuple(self.services[name].marker_args()),
                             record.started_at)

    def _process(self, name: str) -> psutil.Process | None:
        """The live process from our pid file, or None if absent, dead or a recycled pid
        (:func:`rdg_platform.processes.find`: the markers decide, not the drifting create time)."""
        return find(self._record(name))

    def _orphans(self, name: str) -> list[psutil.Process]:
        """Our service processes for this state dir that no pid file names (e.g. after a crash of
        the CLI between spawn and pid-file write); ``down`` stops them too before any purge."""
        markers = (f"-Drdg.service={name}", f"-Drdg.state={self.settings.state_dir}")
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info.get("cmdline") or []
            if all(m in cmd for m in markers):
                found.append(proc)
        return found

    def _why_not(self, name: str) -> str:
        """Why :meth:`_process` rejects the pid file (for error messages)."""
        if not self._pid_file(name).exists():
            return "no pid file"
        return why_not(self._record(name))

    # -- status --------------------------------------------------------------------------------
    def _status_of(self, name: str, probe: Probe | None = None) -> ServiceStatus:
        service = self.services[name]
        proc = self._process(name)
        if proc is None:
            return ServiceStatus(name, "stopped", None, service.port, None, False, log=str(service.log_file))
        probe = probe or service.probe()
        state = "running" if probe.healthy else "unhealthy"
        return ServiceStatus(
            name,
            state,
            proc.pid,
            service.port,
            probe.version,
            probe.healthy,
            probe.detail,
            str(service.log_file),
        )

    def status(self, services: Iterable[str] | None = None) -> dict[str, ServiceStatus]:
        """Pid, port, version and health of each service, probing the running ones for real."""
        return {name: self._status_of(name) for name in self._select(services)}

    def is_healthy(self, services: Iterable[str] | None = None) -> bool:
        """True only if every selected service is running and answers its health probe."""
        return all(st.healthy for st in self.status(services).values())

    # -- up ------------------------------------------------------------------------------------
    def _preflight(self, names: list[str]) -> None:
        """Fail before starting anything, with a reason a person can act on."""
        problems: list[str] = []
        if shutil.which("java") is None:
            problems.append(
                "`java` is not on PATH; install a Java 17 runtime (apt-get install openjdk-17-jre-headless)"
            )
        if any(not fetch.is_fetched(self.settings, n) for n in names) and shutil.which("mvn") is None:
            problems.append(
                "`mvn` is not on PATH and the jars are not cached yet; install Maven (apt-get install maven)"
            )
        for directory in (self.settings.state_dir, self.settings.cache_dir):
            directory.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(directory).free
            if free < MIN_FREE_DISK_BYTES:
                problems.append(
                    f"low disk: only {free / 1024**3:.1f} GiB free under {directory} (need 2 GiB)"
                )
        for name in names:
            host = self.services[name].bind_host
            for role, port in self.services[name].ports().items():
                if not port_is_free(host, port):
                    owner = port_owner(port)
                    who = f" by {owner}" if owner else ""
                    problems.append(f"{name}: {role} port {port} on {host} is already in use{who}")
        if problems:
            raise ServiceError("cannot start services:\n  - " + "\n  - ".join(problems))

    def _start(self, name: str) -> None:
        """Fetch (cached), configure and launch one service detached from this process."""
        service = self.services[name]
        jars = fetch.ensure_jars(self.settings, name, echo=self.echo)
        service.prepare(jars)
        service.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = ["java", *service.command(jars)]
        # Own session and process group (survives the CLI; down signals the group). The JVM needs no
        # RDG_* setting (its config files are written above), so none, and no secret, reaches it.
        env = {k: v for k, v in self.settings.child_env().items() if not k.startswith("RDG_")}
        started = start_detached(cmd, log_file=service.out_file, env=env,
                                 markers=service.marker_args(), cwd=service.cwd(),
                                 pid_file=PidFile(self._pid_file(name)))
        self.echo(f"started {name} (pid {started.record.pid}, port {service.port})")

    def _failure(self, name: str, reason: str) -> str:
        service = self.services[name]
        lines = [f"{name}: {reason}", f"--- last lines of {service.log_file} ---", *tail(service.log_file)]
        if service.out_file != service.log_file:
            out = [line for line in tail(service.out_file, 15) if line.strip()]
            if out:
                lines += [f"--- last lines of {service.out_file} ---", *out]
        return "\n".join(lines)

    def up(
        self, services: Iterable[str] | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> dict[str, ServiceStatus]:
        """Start whatever is not already running and wait until everything answers real requests.

        Idempotent: healthy services are left alone (a second call is a no-op), a service still
        booting from an earlier call is waited for. Raises ServiceError naming the cause and showing
        the log tail if anything fails to become healthy within ``timeout`` seconds.
        """
        names = self._select(services)
        with self._lock():
            running = {n for n in names if self._process(n) is not None}
            to_start = [n for n in names if n not in running]
            for name in to_start:
                self._pid_file(name).unlink(missing_ok=True)  # stale: dead or recycled pid
            if not to_start and all(self.services[n].probe().healthy for n in names):
                self.echo("all services already running and healthy; nothing to do")
                self._provision(names)
                return self.status(names)
            self._preflight(to_start)
            deadline = time.monotonic() + timeout
            errors: list[str] = []
            for name in to_start:
                try:
                    self._start(name)
                except (fetch.FetchError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    errors.append(self._failure(name, f"failed to start: {exc}"))
            if errors:
                raise ServiceError("\n\n".join(errors))
            statuses = self._wait(names, deadline)
            self._provision(names)
            return statuses

    def _provision(self, names: list[str]) -> None:
        """Principals, grants and ACLs inside each healthy server (idempotent)."""
        for name in names:
            try:
                self.services[name].provision()
            except Exception as exc:
                raise ServiceError(self._failure(name, f"started, but provisioning its principals and "
                                                       f"grants failed: {exc}")) from exc

    def _wait(self, names: list[str], deadline: float) -> dict[str, ServiceStatus]:
        """Poll every service until all are healthy, one dies, or the deadline passes."""
        pending = list(names)
        results: dict[str, ServiceStatus] = {}
        errors: list[str] = []
        last: dict[str, Probe] = {}
        started = time.monotonic()
        while pending:
            for name in list(pending):
                if self._process(name) is None:
                    marked = [p for p in self._orphans(name) if _live(p)]
                    if marked:  # our process is alive; the pid-file check missed it (log why)
                        self.echo(f"{name}: pid file does not verify ({self._why_not(name)}) but pid "
                                  f"{marked[0].pid} carries our markers; still waiting for it")
                    else:
                        errors.append(self._failure(name, "process exited during startup "
                                                          f"({self._why_not(name)})"))
                        self._pid_file(name).unlink(missing_ok=True)
                        pending.remove(name)
                        continue
                probe = self.services[name].probe()
                last[name] = probe
                if probe.healthy:
                    results[name] = self._status_of(name, probe)
                    self.echo(f"{name} is ready ({time.monotonic() - started:.1f}s)")
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                for name in pending:
                    detail = last[name].detail if name in last else "no probe yet"
                    errors.append(self._failure(name, f"not healthy before the timeout ({detail})"))
                break
            if pending:
                time.sleep(1.0)
        if errors:
            raise ServiceError("\n\n".join(errors))
        return {name: results[name] for name in names}

    # -- down ----------------------------------------------------------------------------------
    def down(self, services: Iterable[str] | None = None, purge: bool = False) -> dict[str, str]:
        """Stop the services we started (SIGTERM, then SIGKILL after a grace period).

        With ``purge`` the services' data directories are deleted too, for a clean next ``up``.
        Returns what happened to each service.
        """
        names = self._select(services) if services is not None else [  # + optional ones that run
            n for n in SERVICE_NAMES if n in DEFAULT_SERVICES or self._process(n) or self._orphans(n)]
        outcome: dict[str, str] = {}
        with self._lock():
            procs = {n: self._process(n) for n in names}
            for n in names:
                if procs[n] is None:
                    orphans = self._orphans(n)
                    procs[n] = orphans[0] if orphans else None
            stopped = stop([p for p in procs.values() if p is not None], grace_s=STOP_TIMEOUT_S)
            for name, proc in procs.items():
                if proc is None:
                    outcome[name] = "not running"
                elif stopped[proc.pid] == "stopped":
                    outcome[name] = f"stopped (pid {proc.pid})"
                else:
                    outcome[name] = f"killed after {STOP_TIMEOUT_S:.0f}s (pid {proc.pid})"
                self._pid_file(name).unlink(missing_ok=True)
                if purge:
                    shutil.rmtree(self.services[name].data_dir, ignore_errors=True)
                    outcome[name] += ", data purged"
                self.echo(f"{name}: {outcome[name]}")
        return outcome


def format_table(statuses: dict[str, ServiceStatus]) -> str:
    """Plain-text table for the CLI (no extra dependency, readable in CI logs)."""
    headers = ["SERVICE", "STATE", "PID", "PORT", "VERSION", "HEALTHY", "DETAIL"]
    rows = [
        [
            st.name,
            st.state,
            str(st.pid or "-"),
            str(st.port),
            st.version or "-",
            "yes" if st.healthy else "no",
            st.detail if not st.healthy else "",
        ]
        for st in statuses.values()
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)


def _live(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
