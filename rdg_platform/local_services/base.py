"""What every local service looks like to the manager, plus the small OS helpers they share.

A service knows how to write its config, build its java command line and probe its own health; the
manager owns processes, pid files and waiting. Keeping that split means each service module reads
like the recipe for running that one server.
"""

from __future__ import annotations

import fcntl
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from rdg_platform.settings import Settings, connect_host


@dataclass(frozen=True)
class Probe:
    """Result of one health check: healthy means the service answered a real request."""

    healthy: bool
    version: str | None = None
    detail: str = ""


class Service(ABC):
    """One JVM service run from cached Maven jars."""

    name: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def bind_host(self) -> str:
        """The address this server listens on (each service has its own: exposing one never exposes
        the others)."""
        raise NotImplementedError

    @property
    def host(self) -> str:
        """The address a local client (and the health probe) dials."""
        return connect_host(self.bind_host)

    # -- layout --------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.settings.state_dir / "data" / self.name

    @property
    def conf_dir(self) -> Path:
        return self.settings.state_dir / "conf" / self.name

    @property
    def log_dir(self) -> Path:
        return self.settings.state_dir / "logs"

    @property
    def log_file(self) -> Path:
        """The service's own log (log4j2/logback/Quarkus); the first place to look on failure."""
        return self.log_dir / f"{self.name}.log"

    @property
    def out_file(self) -> Path:
        """The JVM's stdout/stderr (crashes before logging is configured end up here)."""
        return self.log_dir / f"{self.name}.out"

    # -- recipe --------------------------------------------------------------------------------
    @property
    @abstractmethod
    def port(self) -> int:
        """The client-facing port shown in status."""

    @abstractmethod
    def ports(self) -> dict[str, int]:
        """Every port the service binds, by role, so a clash can be named precisely."""

    @abstractmethod
    def prepare(self, jars: Path) -> None:
        """Write config files and initialise storage; called before every start."""

    @abstractmethod
    def command(self, jars: Path) -> list[str]:
        """The java command line (without the leading ``java``)."""

    @abstractmethod
    def probe(self) -> Probe:
        """Ask the running service a real question; never raises."""

    def provision(self) -> None:
        """Once healthy: create what the platform needs inside the server (principals, grants,
        ACLs). Idempotent; called after every ``up``. Most services need nothing."""
        return None

    def cwd(self) -> Path:
        return self.data_dir

    def marker_args(self) -> list[str]:
        """System properties that identify our process in ``ps`` and in pid-file verification."""
        return [f"-Drdg.service={self.name}", f"-Drdg.state={self.settings.state_dir}"]


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path``, across processes (one up/down/fetch/build at a time per
    state or cache dir; the lock file is created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_private(path: Path, data: str | bytes) -> None:
    """Write a file only its owner can read (configs, keys and tokens that carry secrets): created
    0600 under a temporary name and renamed into place, so it is never readable by others, not even
    half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def is_loopback(host: str) -> bool:
    """True for loopback addresses and names (what a server without authentication may bind)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port (cheap pre-check before a probe)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    """True if we could bind host:port now, as the JVM will (SO_REUSEADDR, so TIME_WAIT is fine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# Every port a local service set binds, by its settings variable (for isolated instances).


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ask the kernel for ``count`` distinct free ports (held open together so none repeats).

    For isolated instances in tests and benchmarks; a port can still be taken between this call
    and the bind, which the port pre-check of ``up`` then reports by number.
    """
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def port_owner(port: int) -> str | None:
    """Describe the process listening on ``port`` (``pid 123 (java ...)``), if the OS tells us."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in conns:
        if conn.laddr and conn.laddr.port == port and conn.pid and conn.status == psutil.CONN_LISTEN:
            try:
                proc = psutil.Process(conn.pid)
                cmd = " ".join(" ".join(proc.cmdline()).split())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return f"pid {conn.pid}"
            if len(cmd) > 120:
                cmd = cmd[:117] + "..."
            return f"pid {conn.pid} ({cmd})"
    return None


def tail(path: Path, lines: int = 30) -> list[str]:
    """Last ``lines`` lines of a log file, or nothing if it does not exist yet."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]
