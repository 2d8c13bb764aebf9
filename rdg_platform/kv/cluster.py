"""One driver ``Session`` per Cassandra cluster, with token-aware, DC-aware routing.

Why a registry: KVDAL lets a namespace move to its own cluster by configuration alone, so the KV layer
must never assume "the" cluster. Namespaces name a cluster from ``spec.clusters``; this module turns
each distinct cluster into exactly one ``cassandra.cluster.Cluster``/``Session`` (driver sessions are
expensive, thread-safe and multiplex many in-flight requests, so one per cluster is the right number).

Credentials and TLS are explicit arguments (:class:`ClusterConfig`): the entry points take them from
the settings (``RDG_CASSANDRA_USERNAME``/``_PASSWORD``/``_SSL_CA``); this module reads no environment.

Routing: ``TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc))`` sends each single-partition request
straight to a replica of its partition in the local DC, saving a coordinator hop. Rows come back as
plain tuples (``tuple_factory``): the hot read path indexes columns positionally and skips the
per-result namedtuple class construction of the driver's default row factory.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, ResponseFuture, Session
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
from cassandra.query import tuple_factory

if TYPE_CHECKING:
    from rdg_platform.settings import CassandraSettings

log = logging.getLogger(__name__)

try:  # libev is the fastest reactor the driver ships; fall back to asyncio/asyncore when absent.
    from cassandra.io.libevreactor import LibevConnection as _ConnectionClass
except Exception:  # pragma: no cover - depends on how the driver wheel was built
    _ConnectionClass = None  # type: ignore[assignment,misc]


@dataclass(frozen=True)
class Credentials:
    """Who the driver logs in as and which CA it trusts (all optional: no auth, no TLS)."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_ca: Path | None = None

    @classmethod
    def of(cls, cassandra: CassandraSettings | None) -> Credentials:
        """The credentials named by the Cassandra settings (none when ``cassandra`` is None)."""
        if cassandra is None:
            return cls()
        pw = cassandra.password.get_secret_value() if cassandra.password is not None else None
        return cls(cassandra.username, pw, cassandra.ssl_ca)


@dataclass(frozen=True)
class ClusterConfig:
    """How to reach one Cassandra cluster (built from ``spec.clusters[...]`` plus credentials)."""

    name: str
    contact_points: tuple[str, ...]
    port: int
    local_dc: str
    request_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    protocol_version: int | None = None  # None: negotiate the highest both sides support
    credentials: Credentials = Credentials()


def _ssl_context(ca: Path) -> ssl.SSLContext:
    """Client TLS that verifies the server against ``ca`` (a PEM file)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    # Contact points are usually IPs, which the node certificates do not name; trust is the CA's.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _make_cluster(cfg: ClusterConfig) -> Cluster:
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=cfg.local_dc)),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        request_timeout=cfg.request_timeout_s,
        row_factory=tuple_factory,
    )
    kwargs: dict[str, Any] = {
        "contact_points": list(cfg.contact_points),
        "port": cfg.port,
        "execution_profiles": {EXEC_PROFILE_DEFAULT: profile},
        "connect_timeout": cfg.connect_timeout_s,
        "control_connection_timeout": cfg.connect_timeout_s,
        # A single-node local cluster has no peers to gossip about; skip the schema-agreement
        # wait on the hot path but keep it bounded for DDL.
        "max_schema_agreement_wait": 10,
        # The driver's default backoff grows to 10 minutes; after a Cassandra restart the sinks and
        # the query service must be back within seconds, so cap it at 5 s.
        "reconnection_policy": ExponentialReconnectionPolicy(base_delay=0.5, max_delay=5.0),
    }
    creds = cfg.credentials
    if creds.username is not None:
        kwargs["auth_provider"] = PlainTextAuthProvider(username=creds.username, password=creds.password or "")
    if creds.ssl_ca is not None:
        kwargs["ssl_context"] = _ssl_context(creds.ssl_ca)
    if cfg.protocol_version is not None:
        kwargs["protocol_version"] = cfg.protocol_version
    if _ConnectionClass is not None:
        kwargs["connection_class"] = _ConnectionClass
    return Cluster(**kwargs)


class SessionRegistry:
    """Lazily connects one session per cluster name; thread-safe; ``close()`` shuts them all down."""

    def __init__(self, clusters: dict[str, ClusterConfig]) -> None:
        self._configs = dict(clusters)
        self._clusters: dict[str, Cluster] = {}
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def config(self, name: str) -> ClusterConfig:
        try:
            return self._configs[name]
        except KeyError:
            raise KeyError(f"cluster {name!r} is not configured (known: {sorted(self._configs)})") from None

    def session(self, name: str) -> Session:
        """The session for cluster ``name``, connecting on first use (raises NoHostAvailable if down)."""
        s = self._sessions.get(name)
        if s is not None:
            return s
        with self._lock:
            s = self._sessions.get(name)
            if s is None:
                cluster = _make_cluster(self.config(name))
                try:
                    s = cluster.connect()
                except Exception:
                    cluster.shutdown()
                    raise
                self._clusters[name] = cluster
                self._sessions[name] = s
                log.info("connected to Cassandra cluster %r at %s", name, self._configs[name].contact_points)
            return s

    def close(self) -> None:
        with self._lock:
            for c in self._clusters.values():
                c.shutdown()
            self._clusters.clear()
            self._sessions.clear()


def await_response(rf: ResponseFuture) -> asyncio.Future[list[Any]]:
    """Bridge a driver ``ResponseFuture`` (completed on the driver's IO thread) into asyncio.

    Only the first page is delivered: callers page explicitly with clustering-key cursors, which keeps
    every request a bounded single-partition read and lets them stop as soon as a limit is met.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[list[Any]] = loop.create_future()

    def _ok(rows: Sequence[Any]) -> None:
        loop.call_soon_threadsafe(_set_result, fut, rows)

    def _err(exc: BaseException) -> None:
        loop.call_soon_threadsafe(_set_exception, fut, exc)

    rf.add_callbacks(_ok, _err)
    return fut


def _set_result(fut: asyncio.Future[list[Any]], rows: Sequence[Any]) -> None:
    if not fut.done():
        fut.set_result(rows if isinstance(rows, list) else list(rows or ()))


def _set_exception(fut: asyncio.Future[list[Any]], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
