"""A Spark standalone cluster (one master, one worker) run from the pyspark wheel, on loopback.

Why: production runs the rebuild on a cluster (``spark://...``, ``k8s://...``), where the driver ships
the job's jars (``spark.jars``) and Python functions to executors in other JVMs. ``local[*]`` runs
everything in the driver's JVM and proves none of that; a real master and worker do, with nothing
to install beyond the wheel the project already depends on (``spark-class`` and the Spark jars are
inside it).

The processes are managed the way :mod:`rdg_platform.local_services.manager` manages the JVM
services: each start writes ``$RDG_STATE_DIR/run/spark-<role>.json`` (pid, create time) and the
command line carries ``-Drdg.service=spark-<role> -Drdg.state=<state dir>``, and every later action
re-checks both before trusting (or signalling) a pid. Everything binds to ``bind_host`` (loopback by
default): ``--host`` for the RPC endpoints and ``SPARK_LOCAL_IP`` for the web UIs and the executors
the worker launches. The worker's executors stop with it (same process group).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from rdg_platform.local_services.base import file_lock, port_is_free, port_owner, tail
from rdg_platform.local_services.manager import ServiceError, ServiceStatus
from rdg_platform.processes import stop_one
from rdg_platform.settings import Settings, connect_host

ROLES: tuple[str, ...] = ("master", "worker")
DEFAULT_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
# Master and worker daemons are bookkeeping only; the executors get the worker's memory.
DAEMON_MEMORY = "256m"

Echo = Callable[[str], None]

_LOG4J2_PROPERTIES = """# Written by rdg: Spark daemons log to their .log file (stdout is redirected there), WARN and up,
# except the lines that say which app/executor came and went.
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.master.name = org.apache.spark.deploy.master.Master
logger.master.level = info
logger.worker.name = org.apache.spark.deploy.worker.Worker
logger.worker.level = info
"""


def _quiet(_: str) -> None:
    """Echo sink for callers that do not want progress output."""


def spark_home() -> Path:
    """The pyspark wheel's directory: it is a complete SPARK_HOME (bin/spark-class, jars/)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def spark_version() -> str:
    import pyspark

    return str(pyspark.__version__)


@dataclass(frozen=True)
class SparkClusterConfig:
    """Ports and size of the local cluster; small by default (the machines have 2 cores)."""

    bind_host: str = "127.0.0.1"
    master_port: int = 7077
    master_webui_port: int = 8480
    worker_port: int = 7078
    worker_webui_port: int = 8481
    worker_cores: int = 2
    worker_memory: str = "2g"


class SparkCluster:
    """Start, stop and inspect the standalone master and worker of one state directory."""

    def __init__(self, settings: Settings, config: SparkClusterConfig | None = None, echo: Echo = _quiet) -> None:
        self.settings = settings
        sp = settings.spark
        self.config = config or SparkClusterConfig(
            bind_host=sp.bind_host, master_port=sp.master_port, master_webui_port=sp.master_webui_port,
            worker_port=sp.worker_port, worker_webui_port=sp.worker_webui_port, worker_cores=sp.worker_cores,
            worker_memory=sp.worker_memory)
        self.echo = echo

    # -- layout ----------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """The address clients (the driver, the probe) dial."""
        return connect_host(self.config.bind_host)

    @property
    def master_url(self) -> str:
        """What a driver passes as ``master`` (``RDG_SPARK_MASTER``) to run on this cluster."""
        return f"spark://{self.host}:{self.config.master_port}"

    @property
    def master_webui(self) -> str:
        return f"http://{self.host}:{self.config.master_webui_port}"

    @property
    def run_dir(self) -> Path:
        return self.settings.state_dir / "run"

    @property
    def conf_dir(self) -> Path:
        return self.settings.state_dir / "conf" / "spark-cluster"

    @property
    def work_dir(self) -> Path:
        """The worker's directory: one ``app-*/<executor id>/`` per executor, holding the jars and
        files the driver shipped to it (``spark.jars``) and the executor's stdout/stderr."""
        return self.settings.state_dir / "data" / "spark-worker"

    def log_file(self, role: str) -> Path:
        return self.settings.state_dir / "logs" / f"spark-{role}.log"

    def _pid_file(self, role: str) -> Path:
        return self.run_dir / f"spark-{role}.json"

    def _markers(self, role: str) -> list[str]:
        return [f"-Drdg.service=spark-{role}", f"-Drdg.state={self.settings.state_dir}"]

    def ports(self, role: str) -> dict[str, int]:
        c = self.config
        if role == "master":
            return {"rpc": c.master_port, "webui": c.master_webui_port}
        return {"rpc": c.worker_port, "webui": c.worker_webui_port}

    # -- commands --------------------------------------------------------------------------------
    def command(self, role: str) -> list[str]:
        """``spark-class <daemon class> ...`` for one role (spark-class execs java, so the pid stays)."""
        c = self.config
        spark_class = str(spark_home() / "bin" / "spark-class")
        if role == "master":
            return [spark_class, "org.apache.spark.deploy.master.Master", "--host", c.bind_host,
                    "--port", str(c.master_port), "--webui-port", str(c.master_webui_port)]
        return [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", c.bind_host,
                "--port", str(c.worker_port), "--webui-port", str(c.worker_webui_port),
                "--cores", str(c.worker_cores), "--memory", c.worker_memory,
                "--work-dir", str(self.work_dir), f"spark://{self.host}:{c.master_port}"]

    def environment(self, role: str) -> dict[str, str]:
        """The daemon's environment: the settings' child environment plus Spark's own variables."""
        env = self.settings.child_env()
        env.update({
            "SPARK_HOME": str(spark_home()),
            "SPARK_CONF_DIR": str(self.conf_dir),
            "SPARK_LOCAL_IP": self.config.bind_host,  # web UIs and executors bind here too
            "SPARK_PUBLIC_DNS": self.host,
            "SPARK_LOG_DIR": str(self.log_file(role).parent),
            "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
            "SPARK_DAEMON_JAVA_OPTS": " ".join(self._markers(role)),
            # Finished apps' executor dirs hold a copy of every shipped jar (~100 MB); drop them after an hour.
            "SPARK_WORKER_OPTS": "-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.interval=600 "
                                 "-Dspark.worker.cleanup.appDataTtl=3600",
        })
        return env

    # -- processes -------------------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        with file_lock(self.run_dir / ".spark-cluster.lock"):
            yield

    def _process(self, role: str) -> psutil.Process | None:
        """The live process from the pid file if it is still ours (markers on its command line)."""
        try:
            record = json.loads(self._pid_file(role).read_text())
            proc = psutil.Process(int(record["pid"]))
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            cmdline = proc.cmdline()
            if cmdline and "spark-class" in " ".join(cmdline[:2]):
                # Between fork and spark-class's exec of java the markers are not on the command line yet.
                return proc if abs(proc.create_time() - float(record["create_time"])) <= 1.0 else None
            return proc if all(m in cmdline for m in self._markers(role)) else None
        except (OSError, ValueError, KeyError, psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def _start(self, role: str) -> None:
        log = self.log_file(role)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(self.command(role), cwd=self.work_dir, env=self.environment(role),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # own process group: down stops its executors too
        record = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(),
                  "port": self.ports(role)["rpc"], "started_at": time.time()}
        self._pid_file(role).write_text(json.dumps(record))
        self.echo(f"started spark {role} (pid {proc.pid}, port {self.ports(role)['rpc']})")

    def master_state(self) -> dict[str, Any] | None:
        """The master's ``/json`` view (status, alive workers, cores, apps), or None if unreachable."""
        try:
            response = httpx.get(f"{self.master_webui}/json/", timeout=5)
            if response.status_code != 200:
                return None
            data = response.json()
            return data if isinstance(data, dict) else None
        except (httpx.HTTPError, ValueError):
            return None

    def _probe(self, role: str, state: dict[str, Any] | None) -> tuple[bool, str]:
        """Healthy master = its REST view says ALIVE; healthy worker = the master lists it ALIVE."""
        if state is None:
            return False, "master web UI not answering"
        if role == "master":
            ok = state.get("status") == "ALIVE"
            return ok, "" if ok else f"master status {state.get('status')}"
        for worker in state.get("workers", []):
            if worker.get("state") == "ALIVE" and worker.get("port") == self.config.worker_port:
                return True, ""
        return False, "worker not registered with the master"

    def status(self) -> dict[str, ServiceStatus]:
        """Pid, port, version and health of the master and the worker (a real request to the master)."""
        state = self.master_state()
        out: dict[str, ServiceStatus] = {}
        for role in ROLES:
            name = f"spark-{role}"
            proc = self._process(role)
            log = str(self.log_file(role))
            if proc is None:
                out[name] = ServiceStatus(name, "stopped", None, self.ports(role)["rpc"], None, False, log=log)
                continue
            healthy, detail = self._probe(role, state)
            out[name] = ServiceStatus(name, "running" if healthy else "unhealthy", proc.pid, self.ports(role)["rpc"],
                                      spark_version(), healthy, detail, log)
        return out

    def is_healthy(self) -> bool:
        return all(st.healthy for st in self.status().values())

    def up(self, timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, ServiceStatus]:
        """Start whatever is not running and wait until the master is ALIVE with the worker registered.

        Idempotent like ``rdg services up``. Raises ServiceError with the log tail on failure.
        """
        with self._lock():
            missing = [role for role in ROLES if self._process(role) is None]
            if not missing and self.is_healthy():
                self.echo("spark cluster already running and healthy; nothing to do")
                return self.status()
            problems = [f"spark-{role}: {what} port {port} on {self.config.bind_host} is already in use"
                        + (f" by {owner}" if (owner := port_owner(port)) else "")
                        for role in missing for what, port in self.ports(role).items()
                        if not port_is_free(self.config.bind_host, port)]
            if problems:
                raise ServiceError("cannot start the spark cluster:\n  - " + "\n  - ".join(problems))
            self.conf_dir.mkdir(parents=True, exist_ok=True)
            self.work_dir.mkdir(parents=True, exist_ok=True)
            (self.conf_dir / "log4j2.properties").write_text(_LOG4J2_PROPERTIES)
            for role in missing:
                self._pid_file(role).unlink(missing_ok=True)
                self._start(role)
            deadline = time.monotonic() + timeout
            started = time.monotonic()
            while True:
                statuses = self.status()
                dead = [st.name for st in statuses.values() if st.state == "stopped"]
                if dead or all(st.healthy for st in statuses.values()) or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            if dead or not all(st.healthy for st in statuses.values()):
                reasons = []
                for st in statuses.values():
                    if not st.healthy:
                        why = "process exited" if st.state == "stopped" else st.detail or "not healthy in time"
                        role = st.name.removeprefix("spark-")
                        reasons.append("\n".join([f"{st.name}: {why}", f"--- last lines of {st.log} ---",
                                                  *tail(self.log_file(role))]))
                raise ServiceError("\n\n".join(reasons))
            self.echo(f"spark cluster is ready at {self.master_url} ({time.monotonic() - started:.1f}s)")
            return statuses

    def down(self) -> dict[str, str]:
        """Stop the worker (and its executors), then the master; only processes verified to be ours."""
        outcome: dict[str, str] = {}
        with self._lock():
            for role in reversed(ROLES):
                name = f"spark-{role}"
                proc = self._process(role)
                outcome[name] = stop_one(proc, STOP_TIMEOUT_S)
                self._pid_file(role).unlink(missing_ok=True)
                self.echo(f"{name}: {outcome[name]}")
        return outcome
