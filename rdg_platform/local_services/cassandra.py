"""Cassandra 5.0 as a single local node, run straight from the cassandra-all jars.

There is no tarball on Maven Central, so we supply what the tarball's bin/cassandra would: a
minimal cassandra.yaml, a logback.xml, and the Java 17 module flags from conf/jvm17-server.options.
The yaml is tuned to boot fast and stay small (one token, no auto snapshots, generous timeouts
because the box is shared and slow), not for throughput.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from rdg_platform.local_services.base import Probe, Service, port_is_open
from rdg_platform.local_services.credentials import PRINCIPALS, load_or_create
from rdg_platform.topology import check_identifier

if TYPE_CHECKING:
    from cassandra.cluster import Cluster, Session

DEFAULT_SUPERUSER = "cassandra"  # Cassandra's built-in superuser (password = name) on a fresh node

# From apache/cassandra conf/jvm17-server.options ("### JPMS" and "### Netty Options" sections;
# read at commit 07ad4a29635e9b29eb87dcb5ff2512b6794c66fe; verified to boot 5.0.9 on Java 17).
# Cassandra reaches into JDK internals (jamm, off-heap buffers, JMX, javac for UDFs), so without
# these it fails at startup on Java 17.
CASSANDRA_JVM17_OPTS = [
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]

# Small heap and few GC/JIT threads: several developers share a 2-core machine.
CASSANDRA_HEAP_OPTS = [
    "-Xms1g",
    "-Xmx1g",
    "-XX:MaxDirectMemorySize=512m",
    "-XX:+UseG1GC",
    "-XX:ParallelGCThreads=2",
    "-XX:ConcGCThreads=1",
    "-XX:CICompilerCount=2",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:+PerfDisableSharedMem",
    "-Djava.net.preferIPv4Stack=true",
]

# Startup shortcuts that only make sense for a single local node.
CASSANDRA_FAST_START_OPTS = [
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=100",
    "-Dcassandra.superuser_setup_delay_ms=0",
    "-Dcassandra.load_ring_state=false",
    "-Dcassandra.auto_bootstrap=false",
]

_LOGBACK_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by rdg services: Cassandra logs to a file under the state dir. -->
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>{log}</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>{log}.%i</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>50MB</maxFileSize>
    </triggeringPolicy>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"""


class CassandraService(Service):
    """Single node: native protocol on RDG_CASSANDRA_PORT, gossip on storage_port, JMX local."""

    name = "cassandra"

    @property
    def port(self) -> int:
        return self.settings.cassandra.port

    @property
    def bind_host(self) -> str:
        return self.settings.cassandra.bind_host

    def ports(self) -> dict[str, int]:
        s = self.settings
        return {"native": s.cassandra.port, "storage": s.cassandra.storage_port, "jmx": s.cassandra.jmx_port}

    @property
    def yaml_file(self) -> Path:
        return self.conf_dir / "cassandra.yaml"

    def cassandra_yaml(self) -> dict[str, object]:
        """Minimal node config; every path under the state dir so ``down --purge`` removes it all."""
        s = self.settings
        data = self.data_dir
        return {
            "cluster_name": "rdg-local",
            "num_tokens": 1,
            "initial_token": "0",
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
            "endpoint_snitch": "SimpleSnitch",
            "seed_provider": [
                {
                    "class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
                    "parameters": [{"seeds": f"{self.host}:{s.cassandra.storage_port}"}],
                }
            ],
            "listen_address": self.host,
            "rpc_address": self.bind_host,
            "storage_port": s.cassandra.storage_port,
            "native_transport_port": s.cassandra.port,
            "start_native_transport": True,
            "data_file_directories": [str(data / "data")],
            "commitlog_directory": str(data / "commitlog"),
            "saved_caches_directory": str(data / "saved_caches"),
            "hints_directory": str(data / "hints"),
            "cdc_raw_directory": str(data / "cdc_raw"),
            "commitlog_sync": "periodic",
            "commitlog_sync_period": "10000ms",
            "commitlog_segment_size": "16MiB",
            # Security on by default: passwords and role grants (see provision()).
            "authenticator": "PasswordAuthenticator",
            "authorizer": "CassandraAuthorizer",
            "role_manager": "CassandraRoleManager",
            "network_authorizer": "AllowAllNetworkAuthorizer",
            "roles_validity": "10000ms",
            "permissions_validity": "10000ms",
            "credentials_validity": "10000ms",
            "user_defined_functions_enabled": False,
            "materialized_views_enabled": False,
            "sasi_indexes_enabled": False,
            # A fresh single node has nothing to stay compatible with; NONE enables 5.0 formats.
            "storage_compatibility_mode": "NONE",
            # Tests drop/truncate a lot; snapshots would make that slow and fill the disk.
            "auto_snapshot": False,
            "snapshot_before_compaction": False,
            "concurrent_reads": 8,
            "concurrent_writes": 8,
            "concurrent_counter_writes": 4,
            "concurrent_compactors": 1,
            "memtable_heap_space": "128MiB",
            "memtable_offheap_space": "128MiB",
            # Generous: the machine is shared and GC pauses on 2 cores are long.
            "read_request_timeout": "10000ms",
            "range_request_timeout": "20000ms",
            "write_request_timeout": "10000ms",
            "counter_write_request_timeout": "10000ms",
            "truncate_request_timeout": "60000ms",
            "request_timeout": "20000ms",
            "native_transport_idle_timeout": "0ms",
            "batch_size_warn_threshold": "64KiB",
            "batch_size_fail_threshold": "640KiB",
            "dynamic_snitch": False,
        }

    def prepare(self, jars: Path) -> None:
        """Write cassandra.yaml and logback.xml; Cassandra creates its own directories."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "triggers").mkdir(exist_ok=True)
        self.yaml_file.write_text(yaml.safe_dump(self.cassandra_yaml(), sort_keys=False))
        (self.conf_dir / "logback.xml").write_text(_LOGBACK_XML.replace("{log}", str(self.log_file)))

    def command(self, jars: Path) -> list[str]:
        jamm = sorted(jars.glob("jamm-*.jar"))
        agent = [f"-javaagent:{jamm[0]}"] if jamm else []
        return [
            *CASSANDRA_HEAP_OPTS,
            *CASSANDRA_JVM17_OPTS,
            *agent,
            *self.marker_args(),
            *CASSANDRA_FAST_START_OPTS,
            f"-Dcassandra.config={self.yaml_file.as_uri()}",
            f"-Dcassandra.storagedir={self.data_dir}",
            f"-Dcassandra.logdir={self.log_dir}",
            f"-Dlogback.configurationFile={self.conf_dir / 'logback.xml'}",
            f"-Dcassandra.triggers_dir={self.conf_dir / 'triggers'}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.jmx.local.port={self.settings.cassandra.jmx_port}",
            "-cp",
            f"{self.conf_dir}:{jars}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def _connect(self, user: str, password: str) -> tuple[Cluster, Session]:
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import Cluster

        cluster = Cluster(contact_points=[self.host], port=self.settings.cassandra.port, connect_timeout=5,
                          control_connection_timeout=5,
                          auth_provider=PlainTextAuthProvider(username=user, password=password))
        try:
            return cluster, cluster.connect()
        except Exception:
            cluster.shutdown()
            raise

    def _superuser(self) -> tuple[Cluster, Session, bool]:
        """A session as the local admin role, or (first start, before provision) as Cassandra's
        default superuser; the flag says which (True = still the default superuser)."""
        from cassandra.cluster import NoHostAvailable

        creds = load_or_create(self.settings.state_dir)
        try:
            return (*self._connect(PRINCIPALS["admin"], creds.password("admin")), False)
        except NoHostAvailable as exc:
            if "AuthenticationFailed" not in str(exc) and "Bad credentials" not in str(exc):
                raise
        return (*self._connect(DEFAULT_SUPERUSER, DEFAULT_SUPERUSER), True)

    def probe(self) -> Probe:
        """Healthy = a CQL query against system.local answers (so the node accepts real work)."""
        if not port_is_open(self.host, self.settings.cassandra.port):
            return Probe(False, detail="native port not accepting connections")
        try:
            cluster, session, _default = self._superuser()
            try:
                row = session.execute("SELECT release_version FROM system.local", timeout=5).one()
            finally:
                cluster.shutdown()
        except Exception as exc:  # noqa: BLE001 - any failure just means "not ready yet"
            return Probe(False, detail=f"CQL query failed: {exc}")
        return Probe(True, version=str(row.release_version) if row else None)

    def provision(self) -> None:
        """Roles and grants, idempotently: the local admin superuser replaces Cassandra's default
        ``cassandra``/``cassandra`` (whose password is replaced and login disabled), then one login
        role per platform role, and grants on the graph keyspaces: ``app`` SELECT+MODIFY (write
        rows, never DDL), ``reader`` SELECT, ``upstream`` nothing."""
        creds = load_or_create(self.settings.state_dir)
        admin = PRINCIPALS["admin"]
        cluster, session, fresh = self._superuser()
        try:
            if fresh:
                session.execute("CREATE ROLE IF NOT EXISTS " + admin + " WITH SUPERUSER = true AND LOGIN = true "
                                "AND PASSWORD = %s", (creds.password("admin"),))
        finally:
            cluster.shutdown()
        cluster, session = self._connect(admin, creds.password("admin"))
        try:
            if fresh:  # once: the well-known default superuser can no longer log in
                session.execute("ALTER ROLE " + DEFAULT_SUPERUSER + " WITH PASSWORD = %s AND LOGIN = false",
                                (creds.cassandra_superuser_password,))
            for role in ("app", "reader", "upstream"):
                session.execute("CREATE ROLE IF NOT EXISTS " + PRINCIPALS[role] + " WITH LOGIN = true "
                                "AND PASSWORD = %s", (creds.password(role),))
            for keyspace in self.graph_keyspaces:
                grant_graph_access(session, keyspace)
        finally:
            cluster.shutdown()

    @property
    def graph_keyspaces(self) -> list[str]:
        spec = self.settings.load_spec()
        return sorted({ns.keyspace for ns in spec.namespaces.values()})


def grant_graph_access(session: Session, keyspace: str, replication_factor: int = 1) -> None:
    """Create a graph keyspace if needed and grant the platform roles their access to it: ``app``
    reads and writes rows, ``reader`` reads; neither may create, alter or drop anything. Run as the
    admin role (local services' provisioning, or a test that makes its own keyspace)."""
    ks = check_identifier(keyspace, "keyspace")
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
                    f"{{'class': 'SimpleStrategy', 'replication_factor': {int(replication_factor)}}}")
    session.execute(f"GRANT SELECT ON KEYSPACE {ks} TO {PRINCIPALS['app']}")
    session.execute(f"GRANT MODIFY ON KEYSPACE {ks} TO {PRINCIPALS['app']}")
    session.execute(f"GRANT SELECT ON KEYSPACE {ks} TO {PRINCIPALS['reader']}")
