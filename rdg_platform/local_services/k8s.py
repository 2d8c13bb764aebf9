"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and kwok, started and stopped as detached processes by the project's own code.

Why: the streaming apps and the graph API are deployed to Kubernetes in production, so manifests and
the Dagster launcher are tested against a real API server rather than rendered and trusted. No
container runtime exists on these machines, so kwok (the Kubernetes SIG's node simulator) plays one
fake node and drives pod status; everything else is the real thing.

Where the pieces come from:

- etcd is Debian's ``etcd-server`` package (``scripts/ensure_etcd.sh`` installs it).
- kube-apiserver, kube-controller-manager and kube-scheduler are built with ``go build`` from the
  ``k8s.io/kubernetes`` module through the wrapper module in ``deps/k8s`` (its go.mod/go.sum pin
  every dependency). kwok is ``go install``-ed at a pinned version. The binaries are cached under
  ``<cache_dir>/k8s/bin/`` keyed by the pins, so only the first run on a machine compiles (minutes).

Security mirrors the other local services: the API server only accepts a generated admin bearer
token (anonymous requests get 401), authorizes with RBAC, serves TLS with a generated CA, and talks
to etcd over mutual TLS. Every listener binds 127.0.0.1. Credentials are generated once per state
directory and written with mode 0600.

Process handling follows :mod:`rdg_platform.local_services.manager`: each start writes a pid file,
and a pid is trusted (or signalled) only if the live process still runs our binary with an argument
naming this state directory, so ``down`` never touches another developer's cluster.

Nothing here reads the environment: paths and ports are constructor arguments, chosen by the CLI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from rdg_platform.local_services.base import file_lock, port_is_free, port_owner, tail, write_private
from rdg_platform.local_services.manager import _live
from rdg_platform.local_services.tls import (
    CA_DAYS,
    CERT_DAYS,
    certificate,
    is_current,
    write_cert,
    write_key,
)
from rdg_platform.processes import stop_one
from rdg_platform.settings import Settings

Echo = Callable[[str], None]

HOST = "127.0.0.1"
COMPONENTS: tuple[str, ...] = ("etcd", "apiserver", "controller-manager", "scheduler", "kwok")
KUBE_BINARIES: tuple[str, ...] = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
BINARY_NAMES: dict[str, str] = {
    "etcd": "etcd",
    "apiserver": "kube-apiserver",
    "controller-manager": "kube-controller-manager",
    "scheduler": "kube-scheduler",
    "kwok": "kwok",
}
KWOK_MODULE = "sigs.k8s.io/kwok/cmd/kwok"
KWOK_VERSION = "v0.7.0"
# Ports below the Linux ephemeral range (32768+) and away from the defaults (2379, 6443, 10257,
# 10259, 10247), so a developer's own cluster and the shared JVM services do not clash.
DEFAULT_ETCD_PORT = 12379
DEFAULT_ETCD_PEER_PORT = 12380
DEFAULT_APISERVER_PORT = 16443
DEFAULT_CONTROLLER_MANAGER_PORT = 10357
DEFAULT_SCHEDULER_PORT = 10359
DEFAULT_KWOK_PORT = 10347
DEFAULT_ETCD_BINARY = Path("/usr/bin/etcd")
DEFAULT_MODULE_DIR = Path(__file__).resolve().parents[2] / "deps" / "k8s"
DEFAULT_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
NODE_NAME = "rdg-kwok-node"
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # first address of the range: the `kubernetes` Service
ADMIN_USER = "rdg-admin"
# Part of the binary cache key: bump it whenever the build commands below change.
BUILD_RECIPE = "1"
# Children get this environment only, so nothing of the caller's shell leaks into the cluster.
CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class K8sError(RuntimeError):
    """The control plane could not be built, started or reached; the message names the cause."""


@dataclass
class ComponentStatus:
    """One row of ``rdg k8s status``."""

    name: str
    state: str  # running | unhealthy | stopped
    pid: int | None
    port: int
    healthy: bool
    detail: str = ""
    log: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _quiet(_: str) -> None:
    """Echo sink for callers (tests) that do not want progress output."""


class K8sControlPlane:
    """The local control plane of one state directory, with binaries cached in one cache directory."""

    @classmethod
    def from_settings(cls, settings: Settings, echo: Echo = _quiet) -> K8sControlPlane:
        """The control plane of ``settings``' state and cache directories, on its ``RDG_K8S_*`` ports."""
        k = settings.k8s
        return cls(settings.state_dir, settings.cache_dir, etcd_port=k.etcd_port, etcd_peer_port=k.etcd_peer_port,
                   apiserver_port=k.apiserver_port, controller_manager_port=k.controller_manager_port,
                   scheduler_port=k.scheduler_port, kwok_port=k.kwok_port, echo=echo)

    def __init__(
        self,
        state_dir: Path,
        cache_dir: Path,
        *,
        etcd_port: int = DEFAULT_ETCD_PORT,
        etcd_peer_port: int = DEFAULT_ETCD_PEER_PORT,
        apiserver_port: int = DEFAULT_APISERVER_PORT,
        controller_manager_port: int = DEFAULT_CONTROLLER_MANAGER_PORT,
        scheduler_port: int = DEFAULT_SCHEDULER_PORT,
        kwok_port: int = DEFAULT_KWOK_PORT,
        etcd_binary: Path = DEFAULT_ETCD_BINARY,
        go_binary: Path | None = None,
        module_dir: Path = DEFAULT_MODULE_DIR,
        echo: Echo = _quiet,
    ) -> None:
        self.state_dir = state_dir
        self.cache_dir = cache_dir
        self.etcd_port = etcd_port
        self.etcd_peer_port = etcd_peer_port
        self.apiserver_port = apiserver_port
        self.controller_manager_port = controller_manager_port
        self.scheduler_port = scheduler_port
        self.kwok_port = kwok_port
        self.etcd_binary = etcd_binary
        self.go_binary = go_binary if go_binary is not None else _find_go()
        self.module_dir = module_dir
        self.echo = echo

    # -- layout ----------------------------------------------------------------------------------
    @property
    def k8s_dir(self) -> Path:
        return self.state_dir / "k8s"

    @property
    def pki_dir(self) -> Path:
        return self.k8s_dir / "pki"

    @property
    def run_dir(self) -> Path:
        return self.k8s_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.k8s_dir / "logs"

    @property
    def etcd_data_dir(self) -> Path:
        return self.k8s_dir / "etcd"

    @property
    def kubeconfig_path(self) -> Path:
        """Admin kubeconfig (mode 0600) for kubectl, the Python client and the components."""
        return self.k8s_dir / "kubeconfig"

    @property
    def ca_path(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def token_file(self) -> Path:
        return self.pki_dir / "tokens.csv"

    @property
    def server_url(self) -> str:
        return f"https://{HOST}:{self.apiserver_port}"

    def ports(self) -> dict[str, int]:
        """The client-facing port of each component, as shown by ``status``."""
        return {
            "etcd": self.etcd_port,
            "apiserver": self.apiserver_port,
            "controller-manager": self.controller_manager_port,
            "scheduler": self.scheduler_port,
            "kwok": self.kwok_port,
        }

    def _all_ports(self, name: str) -> dict[str, int]:
        """Every port a component binds, by role, so a clash can be named precisely."""
        ports = {"client": self.ports()[name]}
        if name == "etcd":
            ports["peer"] = self.etcd_peer_port
        return ports

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    # -- binaries --------------------------------------------------------------------------------
    def _kube_key(self) -> str:
        """Cache key of the kube binaries: the pinned module files plus the build recipe."""
        digest = hashlib.sha256(BUILD_RECIPE.encode())
        for name in ("go.mod", "go.sum", "tools.go"):
            path = self.module_dir / name
            if not path.is_file():
                raise K8sError(f"missing {path}: the pinned Kubernetes wrapper module is incomplete")
            digest.update(name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:16]

    @property
    def bin_root(self) -> Path:
        return self.cache_dir / "k8s" / "bin"

    def _kube_bin_dir(self) -> Path:
        return self.bin_root / f"kube-{self.kubernetes_version()}-{self._kube_key()}"

    def _kwok_bin_dir(self) -> Path:
        return self.bin_root / f"kwok-{KWOK_VERSION}-r{BUILD_RECIPE}"

    def kubernetes_version(self) -> str:
        """The ``k8s.io/kubernetes`` version the wrapper module requires (e.g. ``v1.34.2``)."""
        gomod = (self.module_dir / "go.mod").read_text()
        match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)", gomod, re.MULTILINE)
        if match is None:
            raise K8sError(f"{self.module_dir / 'go.mod'} does not require k8s.io/kubernetes")
        return match.group(1)

    def binaries(self) -> dict[str, Path]:
        """Where each binary lives (whether or not it is built yet)."""
        kube = self._kube_bin_dir()
        paths = {name: kube / name for name in KUBE_BINARIES}
        paths["kwok"] = self._kwok_bin_dir() / "kwok"
        paths["etcd"] = self.etcd_binary
        return paths

    def binaries_cached(self) -> bool:
        return all((d / ".complete").is_file() for d in (self._kube_bin_dir(), self._kwok_bin_dir()))

    def ensure_binaries(self) -> dict[str, Path]:
        """Build (once per pin set and machine) the kube binaries and kwok; return every binary path.

        The cold build compiles Kubernetes from source and takes minutes; it reports progress and
        writes its full output to a log under the cache directory. Concurrent callers wait for one
        build instead of compiling twice. A new build replaces the binaries of older pins (a few
        hundred MB each); processes still running them keep working, as Linux keeps unlinked files.
        """
        self.bin_root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.bin_root / ".build.lock"):
            for target, build, prefix in (
                (self._kube_bin_dir(), self._build_kube, "kube-"),
                (self._kwok_bin_dir(), self._build_kwok, "kwok-"),
            ):
                if (target / ".complete").is_file():
                    continue
                build(target)
                for stale in self.bin_root.glob(f"{prefix}*"):
                    if stale.is_dir() and stale != target:
                        shutil.rmtree(stale, ignore_errors=True)
                        self.echo(f"removed binaries of older pins: {stale}")
        return self.binaries()

    def _require_go(self) -> Path:
        if self.go_binary is None or not self.go_binary.is_file():
            raise K8sError(
                "the Kubernetes binaries are not cached yet and `go` was not found (looked on PATH and "
                "at /usr/local/go/bin/go); install Go 1.24 or newer to build them"
            )
        return self.go_binary

    def _build_kube(self, target: Path) -> None:
        go = self._require_go()
        version = self.kubernetes_version()
        major, minor = version.lstrip("v").split(".")[:2]
        # -s -w: no symbol tables (a third smaller, faster to link); -X: the version kubectl sees.
        ldflags = "-s -w " + " ".join(
            f"-X {pkg}.{var}={value}"
            for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
            for var, value in (
                ("gitVersion", version),
                ("gitMajor", major),
                ("gitMinor", minor),
                ("gitTreeState", "clean"),
            )
        )
        work = _fresh_dir(target.with_name(target.name + ".tmp"))
        log = self.bin_root / f"build-{target.name}.log"
        log.unlink(missing_ok=True)
        self.echo(
            f"building Kubernetes {version} control-plane binaries from the Go module proxy into {target} "
            "(first run on this machine only: about 8 minutes on 2 idle cores, longer on a busy machine; "
            "later runs reuse the cache)"
        )
        started = time.monotonic()
        for name in KUBE_BINARIES:
            cmd = [str(go), "build", "-trimpath", "-buildvcs=false", f"-ldflags={ldflags}", "-o", str(work / name),
                   f"k8s.io/kubernetes/cmd/{name}"]
            self._run_build(cmd, cwd=self.module_dir, log=log, label=name)
        (work / ".complete").write_text(json.dumps({"version": version, "built_at": time.time()}))
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
        self.echo(f"built {', '.join(KUBE_BINARIES)} in {_minutes(time.monotonic() - started)}")

    def _build_kwok(self, target: Path) -> None:
        go = self._require_go()
        work = _fresh_dir(target.with_name(target.name + ".tmp"))
        log = self.bin_root / f"build-{target.name}.log"
        log.unlink(missing_ok=True)
        self.echo(f"building kwok {KWOK_VERSION} (node simulator) with go install (a few minutes cold)")
        started = time.monotonic()
        # `env` sets GOBIN for this one command without copying or editing our own environment.
        cmd = ["env", f"GOBIN={work}", str(go), "install", "-trimpath", f"{KWOK_MODULE}@{KWOK_VERSION}"]
        self._run_build(cmd, cwd=self.bin_root, log=log, label="kwok")
        (work / ".complete").write_text(json.dumps({"version": KWOK_VERSION, "built_at": time.time()}))
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
        self.echo(f"built kwok in {_minutes(time.monotonic() - started)}")

    def _run_build(self, cmd: list[str], *, cwd: Path, log: Path, label: str) -> None:
        """Run one build command, echoing a heartbeat each minute; raise with the log on failure."""
        self.echo(f"  go build {label} ... (log: {log})")
        started = time.monotonic()
        next_beat = started + 60.0
        with log.open("ab") as out:
            out.write(f"$ {' '.join(cmd)}\n".encode())
            out.flush()
            proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            while proc.poll() is None:
                time.sleep(1.0)
                if time.monotonic() >= next_beat:
                    self.echo(f"  still building {label} ({_minutes(time.monotonic() - started)} so far)")
                    next_beat += 60.0
        if proc.returncode != 0:
            lines = "\n".join(tail(log, 25))
            raise K8sError(
                f"building {label} failed (exit {proc.returncode}); full log: {log}\n"
                f"--- last lines of {log} ---\n{lines}"
            )
        self.echo(f"  built {label} ({_minutes(time.monotonic() - started)})")

    # -- credentials -----------------------------------------------------------------------------
    def ensure_credentials(self) -> None:
        """Generate (once per state dir) the CA, serving and etcd certs, SA keys, token and kubeconfig.

        Existing material is kept so kubeconfigs handed out earlier stay valid; leaf certificates are
        reissued from the same CA when they near expiry.
        """
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        self.pki_dir.chmod(0o700)
        pki = self.pki_dir
        ca_key_path = pki / "ca.key"
        if not (self.ca_path.is_file() and ca_key_path.is_file()):
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca_cert = certificate(
                "rdg-local-kubernetes-ca", ca_key.public_key(), ca_key, None, days=CA_DAYS, is_ca=True
            )
            write_key(ca_key_path, ca_key)
            write_cert(self.ca_path, ca_cert)
        ca_key_loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(ca_key_loaded, ec.EllipticCurvePrivateKey):
            raise K8sError(f"{ca_key_path} is not an EC private key; delete {pki} to regenerate")
        ca_cert_loaded = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
        leaves: dict[str, tuple[list[str], list[str], list[x509.ObjectIdentifier]]] = {
            "apiserver": (
                ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"],
                [HOST, KUBERNETES_SERVICE_IP],
                [ExtendedKeyUsageOID.SERVER_AUTH],
            ),
            # etcd's gRPC gateway dials etcd itself with the server cert, so it needs client auth too.
            "etcd-server": (
                ["localhost"], [HOST], [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            "etcd-client": ([], [], [ExtendedKeyUsageOID.CLIENT_AUTH]),
        }
        for name, (dns, ips, usages) in leaves.items():
            crt, key = pki / f"{name}.crt", pki / f"{name}.key"
            if key.is_file() and crt.is_file() and is_current(crt, usages):
                continue
            leaf_key = ec.generate_private_key(ec.SECP256R1())
            cert = certificate(
                f"rdg-{name}", leaf_key.public_key(), ca_key_loaded, ca_cert_loaded,
                days=CERT_DAYS, dns=dns, ips=ips, usages=usages,
            )
            write_key(key, leaf_key)
            write_cert(crt, cert)
        sa_key, sa_pub = pki / "sa.key", pki / "sa.pub"
        if not (sa_key.is_file() and sa_pub.is_file()):
            rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            write_key(sa_key, rsa_key)
            sa_pub.write_bytes(
                rsa_key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
        if not self.token_file.is_file():
            write_private(
                self.token_file,
                f'{secrets.token_urlsafe(32)},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'.encode(),
            )
        self._write_kubeconfig()

    def admin_token(self) -> str:
        """The admin bearer token (generated by :meth:`ensure_credentials`)."""
        try:
            return self.token_file.read_text().split(",", 1)[0].strip()
        except OSError as exc:
            raise K8sError(f"no admin token at {self.token_file}; run `rdg k8s up` first") from exc

    def _write_kubeconfig(self) -> None:
        ca_data = base64.b64encode(self.ca_path.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "rdg-local", "cluster": {"server": self.server_url, "certificate-authority-data": ca_data}}
            ],
            "users": [{"name": ADMIN_USER, "user": {"token": self.admin_token()}}],
            "contexts": [{"name": "rdg-local", "context": {"cluster": "rdg-local", "user": ADMIN_USER}}],
            "current-context": "rdg-local",
            "preferences": {},
        }
        write_private(self.kubeconfig_path, yaml.safe_dump(config, sort_keys=False).encode())

    # -- component recipes -----------------------------------------------------------------------
    def _marker(self, name: str) -> str:
        """An argument only our instance of ``name`` for this state dir carries (pid-file check)."""
        return {
            "etcd": f"--data-dir={self.etcd_data_dir}",
            "apiserver": f"--token-auth-file={self.token_file}",
            "controller-manager": f"--kubeconfig={self.kubeconfig_path}",
            "scheduler": f"--kubeconfig={self.kubeconfig_path}",
            "kwok": f"--kubeconfig={self.kubeconfig_path}",
        }[name]

    def _binary(self, name: str) -> Path:
        return self.binaries()[BINARY_NAMES[name]]

    def _command(self, name: str) -> list[str]:
        pki = self.pki_dir
        kubeconfig = str(self.kubeconfig_path)
        etcd_url = f"https://{HOST}:{self.etcd_port}"
        peer_url = f"http://{HOST}:{self.etcd_peer_port}"
        args: list[str]
        if name == "etcd":
            args = [
                "--name=rdg-local",
                self._marker("etcd"),
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=rdg-local={peer_url}",
                "--initial-cluster-state=new",
                f"--cert-file={pki / 'etcd-server.crt'}",
                f"--key-file={pki / 'etcd-server.key'}",
                f"--trusted-ca-file={self.ca_path}",
                "--client-cert-auth=true",
                "--snapshot-count=10000",
                "--logger=zap",
            ]
        elif name == "apiserver":
            args = [
                self._marker("apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--etcd-cafile={self.ca_path}",
                f"--etcd-certfile={pki / 'etcd-client.crt'}",
                f"--etcd-keyfile={pki / 'etcd-client.key'}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={self.ca_path}",
                "--anonymous-auth=false",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={self.server_url}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=false",
                "--profiling=false",
                "--endpoint-reconciler-type=lease",
                # Debian's etcd 3.4.23 lacks the watch-progress requests that streaming lists
                # ("WatchList", on by default in 1.34) need. With it on, the server turns every
                # watch from resourceVersion 0 into a streaming list and then fails it, so clients
                # such as kwok only see changes on their periodic relists; off, watches just work.
                "--feature-gates=WatchList=false",
            ]
        elif name in ("controller-manager", "scheduler"):
            port = self.controller_manager_port if name == "controller-manager" else self.scheduler_port
            args = [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={HOST}",
                f"--secure-port={port}",
                f"--cert-dir={self.k8s_dir / 'serving' / name}",
                "--leader-elect=false",
                "--profiling=false",
            ]
            if name == "controller-manager":
                args += [
                    # No pod network to allocate CIDRs for; bootstrap tokens are not used.
                    "--controllers=*,-node-ipam-controller,-token-cleaner-controller",
                    "--allocate-node-cidrs=false",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={self.ca_path}",
                    "--use-service-account-credentials=false",
                ]
        elif name == "kwok":
            annotation = "=".join(KWOK_NODE_ANNOTATION)
            args = [
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={annotation}",
                f"--server-address={HOST}:{self.kwok_port}",
                f"--node-port={self.kwok_port}",
                f"--node-ip={HOST}",
                # Heartbeat through a Lease, as a kubelet does (and kwokctl configures), so node
                # liveness does not hang on periodic status patches.
                "--node-lease-duration-seconds=40",
            ]
        else:
            raise ValueError(f"unknown component {name!r}")
        return [str(self._binary(name)), *args]

    def _child_env(self) -> dict[str, str]:
        """The whole environment of a component: explicit, so the caller's shell cannot leak in.

        kwok loads ``$HOME/.kwok/kwok.yaml`` (or ``$KWOK_WORKDIR``) when present; pointing both at
        our own directory keeps a developer's personal kwok config out of this cluster.
        """
        home = self.k8s_dir / "home"
        return {"PATH": CHILD_PATH, "HOME": str(home), "KWOK_WORKDIR": str(home / ".kwok"), "LANG": "C.UTF-8"}

    # -- processes -------------------------------------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def _is_ours(self, name: str, cmdline: list[str]) -> bool:
        return (
            bool(cmdline)
            and Path(cmdline[0]).name == BINARY_NAMES[name]
            and self._marker(name) in cmdline
        )

    def _process(self, name: str) -> psutil.Process | None:
        """The live process from our pid file, or None if absent, dead or a recycled pid."""
        try:
            record = json.loads(self._pid_file(name).read_text())
            proc = psutil.Process(int(record["pid"]))
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc if self._is_ours(name, proc.cmdline()) else None
        except (OSError, ValueError, KeyError, psutil.Error):
            return None

    def _why_not(self, name: str) -> str:
        """Why :meth:`_process` rejects the pid file (for error messages)."""
        try:
            record = json.loads(self._pid_file(name).read_text())
            proc = psutil.Process(int(record["pid"]))
            return f"pid {record['pid']} status {proc.status()}, command {proc.cmdline()[:2]}"
        except FileNotFoundError:
            return "no pid file"
        except (OSError, ValueError, KeyError) as exc:
            return f"unreadable pid file: {exc}"
        except psutil.Error as exc:
            return f"pid gone: {type(exc).__name__}"

    def _orphans(self, name: str) -> list[psutil.Process]:
        """Our processes for this state dir that no pid file names (e.g. after the CLI crashed)."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info.get("cmdline") or []
            if self._is_ours(name, cmd) and _live(proc):
                found.append(proc)
        return found

    def _start(self, name: str) -> None:
        self.k8s_dir.mkdir(parents=True, exist_ok=True)
        self.k8s_dir.chmod(0o700)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        home = self.k8s_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        if name == "etcd":
            self.etcd_data_dir.mkdir(parents=True, exist_ok=True)
            self.etcd_data_dir.chmod(0o700)
        cmd = self._command(name)
        log = self.log_file(name)
        with log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=self.k8s_dir,
                env=self._child_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI; its own process group for down
            )
        record = {
            "pid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "port": self.ports()[name],
            "started_at": time.time(),
        }
        self._pid_file(name).write_text(json.dumps(record))
        self.echo(f"started {name} (pid {proc.pid}, port {self.ports()[name]})")

    # -- health ----------------------------------------------------------------------------------
    def _ssl_context(self, *, client_cert: str | None = None, verify: bool = True) -> ssl.SSLContext:
        if not verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        if client_cert is not None:
            ctx.load_cert_chain(self.pki_dir / f"{client_cert}.crt", self.pki_dir / f"{client_cert}.key")
        return ctx

    def api_client(self, timeout: float = 5.0) -> httpx.Client:
        """An HTTP client for the API server that verifies our CA and sends the admin token."""
        return httpx.Client(
            base_url=self.server_url,
            verify=self._ssl_context(),
            headers={"Authorization": f"Bearer {self.admin_token()}"},
            timeout=timeout,
        )

    def probe(self, name: str) -> tuple[bool, str]:
        """Ask one component a real health question; never raises."""
        try:
            if name == "etcd":
                with httpx.Client(verify=self._ssl_context(client_cert="etcd-client"), timeout=3.0) as c:
                    resp = c.get(f"https://{HOST}:{self.etcd_port}/health")
                ok = resp.status_code == 200 and resp.json().get("health") == "true"
                return ok, "" if ok else f"/health: {resp.status_code} {resp.text[:120]}"
            if name == "apiserver":
                with self.api_client(timeout=3.0) as c:
                    resp = c.get("/readyz")
                ok = resp.status_code == 200
                return ok, "" if ok else f"/readyz: {resp.status_code} {resp.text[-200:]}"
            if name in ("controller-manager", "scheduler"):
                port = self.controller_manager_port if name == "controller-manager" else self.scheduler_port
                # Self-signed serving cert of the component itself; /healthz needs no credentials.
                with httpx.Client(verify=self._ssl_context(verify=False), timeout=3.0) as c:
                    resp = c.get(f"https://{HOST}:{port}/healthz")
                ok = resp.status_code == 200
                return ok, "" if ok else f"/healthz: {resp.status_code} {resp.text[:120]}"
            if name == "kwok":
                with httpx.Client(timeout=3.0) as c:
                    resp = c.get(f"http://{HOST}:{self.kwok_port}/healthz")
                if resp.status_code != 200:
                    return False, f"/healthz: {resp.status_code}"
                ready, detail = self.node_ready()
                return ready, "" if ready else detail
        except (httpx.HTTPError, ssl.SSLError, OSError, ValueError, K8sError) as exc:
            return False, f"{type(exc).__name__}: {exc}"[:200]
        return False, f"unknown component {name!r}"

    def node_ready(self) -> tuple[bool, str]:
        """Whether the kwok node reports Ready, with the reason when it does not."""
        try:
            with self.api_client(timeout=3.0) as c:
                resp = c.get(f"/api/v1/nodes/{NODE_NAME}")
        except (httpx.HTTPError, ssl.SSLError, OSError, K8sError) as exc:
            return False, f"node {NODE_NAME}: {type(exc).__name__}: {exc}"[:200]
        if resp.status_code != 200:
            return False, f"node {NODE_NAME}: HTTP {resp.status_code}"
        conditions = resp.json().get("status", {}).get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if ready is not None and ready.get("status") == "True":
            return True, ""
        return False, f"node {NODE_NAME} not Ready yet ({(ready or {}).get('reason', 'no Ready condition')})"

    def _ensure_node(self) -> None:
        """Register the fake node kwok manages (by annotation); a no-op when it exists."""
        key, value = KWOK_NODE_ANNOTATION
        resources = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "200Gi"}
        node: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": "fake",
                    "kubeProxyVersion": "fake",
                },
            },
        }
        with self.api_client() as c:
            if c.get(f"/api/v1/nodes/{NODE_NAME}").status_code == 200:
                return
            resp = c.post("/api/v1/nodes", json=node)
        if resp.status_code not in (201, 409):
            raise K8sError(f"could not register node {NODE_NAME}: HTTP {resp.status_code} {resp.text[:300]}")
        self.echo(f"registered node {NODE_NAME} (simulated by kwok)")

    # -- status / up / down ----------------------------------------------------------------------
    def _status_of(self, name: str, probe: tuple[bool, str] | None = None) -> ComponentStatus:
        proc = self._process(name)
        port = self.ports()[name]
        log = str(self.log_file(name))
        if proc is None:
            return ComponentStatus(name, "stopped", None, port, False, "not running", log)
        healthy, detail = probe or self.probe(name)
        return ComponentStatus(name, "running" if healthy else "unhealthy", proc.pid, port, healthy, detail, log)

    def status(self) -> dict[str, ComponentStatus]:
        """Pid, port and health of each component, probing the running ones for real."""
        return {name: self._status_of(name) for name in COMPONENTS}

    def is_healthy(self) -> bool:
        return all(st.healthy for st in self.status().values())

    def _preflight(self, to_start: list[str]) -> None:
        problems: list[str] = []
        if "etcd" in to_start and not self.etcd_binary.is_file():
            problems.append(
                f"etcd not found at {self.etcd_binary}; install Debian's etcd-server with "
                "scripts/ensure_etcd.sh (apt-get install etcd-server)"
            )
        if not self.binaries_cached() and (self.go_binary is None or not self.go_binary.is_file()):
            problems.append(
                "the Kubernetes binaries are not cached yet and `go` was not found (PATH or "
                "/usr/local/go/bin/go); install Go 1.24+ to build them"
            )
        for name in to_start:
            for role, port in self._all_ports(name).items():
                if not port_is_free(HOST, port):
                    owner = port_owner(port)
                    problems.append(
                        f"{name}: {role} port {port} on {HOST} is already in use"
                        + (f" by {owner}" if owner else "")
                    )
        if problems:
            raise K8sError("cannot start the Kubernetes control plane:\n  - " + "\n  - ".join(problems))

    def _failure(self, name: str, reason: str) -> str:
        log = self.log_file(name)
        return "\n".join([f"{name}: {reason}", f"--- last lines of {log} ---", *tail(log, 25)])

    def _wait(self, name: str, deadline: float) -> ComponentStatus:
        """Poll one component until healthy; raise with its log tail if it dies or times out."""
        started = time.monotonic()
        detail = "no probe yet"
        while True:
            if self._process(name) is None:
                why = self._why_not(name)
                if not self._orphans(name):
                    self._pid_file(name).unlink(missing_ok=True)
                    raise K8sError(self._failure(name, f"process exited during startup ({why})"))
                self.echo(f"{name}: pid file does not verify ({why}) but our process runs; still waiting")
            healthy, detail = self.probe(name)
            if healthy:
                self.echo(f"{name} is ready ({time.monotonic() - started:.1f}s)")
                return self._status_of(name, (healthy, detail))
            if time.monotonic() > deadline:
                raise K8sError(self._failure(name, f"not healthy before the timeout ({detail})"))
            time.sleep(0.5)

    def up(self, timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, ComponentStatus]:
        """Build (cached), configure and start whatever is not running, then wait until healthy.

        Idempotent: healthy components are left alone. Returns each component's status once etcd
        answers /health, the API server /readyz, the controller-manager and scheduler /healthz, and
        kwok /healthz with its node Ready. Raises :class:`K8sError` naming the cause otherwise.
        ``timeout`` bounds the wait for health, not the one-time build.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.run_dir / ".lock"):
            running = {n for n in COMPONENTS if self._process(n) is not None}
            to_start = [n for n in COMPONENTS if n not in running]
            if not to_start and self.is_healthy():
                self.echo("Kubernetes control plane already running and healthy; nothing to do")
                return self.status()
            for name in to_start:
                self._pid_file(name).unlink(missing_ok=True)
                orphans = self._orphans(name)
                if orphans:
                    raise K8sError(
                        f"{name}: pid {orphans[0].pid} runs our {name} for {self.state_dir} without a pid "
                        "file; run `rdg k8s down` first"
                    )
            self._preflight(to_start)
            self.ensure_binaries()
            self.ensure_credentials()
            deadline = time.monotonic() + timeout
            results: dict[str, ComponentStatus] = {}
            for name in COMPONENTS:
                if name in to_start:
                    try:
                        self._start(name)
                    except (OSError, subprocess.SubprocessError) as exc:
                        raise K8sError(self._failure(name, f"failed to start: {exc}")) from exc
                if name == "kwok":
                    self._ensure_node()
                if name in ("etcd", "apiserver", "kwok"):
                    # Each later component needs these to answer first.
                    results[name] = self._wait(name, deadline)
            for name in ("controller-manager", "scheduler"):
                results[name] = self._wait(name, deadline)
            self.echo(f"kubeconfig: {self.kubeconfig_path}")
            return {name: results[name] for name in COMPONENTS}

    def down(self, purge: bool = False) -> dict[str, str]:
        """Stop the components we started, in reverse order (SIGTERM, then SIGKILL after a grace).

        Only processes named by our pid files (or carrying our markers) are signalled. With
        ``purge`` the cluster's data (etcd) is deleted too; credentials and the kubeconfig are kept.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        outcome: dict[str, str] = {}
        with file_lock(self.run_dir / ".lock"):
            for name in reversed(COMPONENTS):
                proc = self._process(name)
                if proc is None:
                    orphans = self._orphans(name)
                    proc = orphans[0] if orphans else None
                outcome[name] = stop_one(proc, STOP_TIMEOUT_S)
                self._pid_file(name).unlink(missing_ok=True)
                self.echo(f"{name}: {outcome[name]}")
            if purge:
                shutil.rmtree(self.etcd_data_dir, ignore_errors=True)
                self.echo(f"purged cluster data ({self.etcd_data_dir})")
        return {name: outcome[name] for name in COMPONENTS}


def format_table(statuses: dict[str, ComponentStatus]) -> str:
    """Plain-text status table for the CLI (readable in CI logs)."""
    headers = ["COMPONENT", "STATE", "PID", "PORT", "HEALTHY", "DETAIL"]
    rows = [
        [st.name, st.state, str(st.pid or "-"), str(st.port), "yes" if st.healthy else "no",
         "" if st.healthy else st.detail]
        for st in statuses.values()
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


# -- helpers -------------------------------------------------------------------------------------
def _find_go() -> Path | None:
    found = shutil.which("go")
    if found:
        return Path(found)
    fallback = Path("/usr/local/go/bin/go")
    return fallback if fallback.is_file() else None


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path



