"""Kafka 4.x in KRaft mode: one JVM that is both broker and controller.

Single-node settings (replication factor 1 everywhere, no initial rebalance delay, explicit topic
creation only) make the local cluster behave like production for our code while staying small.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from rdg_platform.local_services.base import Probe, Service, port_is_open, write_private
from rdg_platform.local_services.credentials import (
    BROKER_PRINCIPAL,
    PRINCIPALS,
    ROLES,
    LocalCredentials,
    Role,
    load_or_create,
)
from rdg_platform.local_services.fetch import KAFKA_VERSION
from rdg_platform.local_services.tls import SERVER, ensure_leaf
from rdg_platform.settings import Settings
from rdg_platform.topology import dlq_topic, graph_topic

if TYPE_CHECKING:
    from confluent_kafka.admin import AclBinding

    from rdg_platform.model.spec import GraphSpec

SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192

# Light JVM: this machine class has 2 cores shared by several developers.
KAFKA_JVM_OPTS = [
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:ParallelGCThreads=1",
    "-XX:ConcGCThreads=1",
    "-XX:CICompilerCount=2",
    "-Djava.awt.headless=true",
]

_LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by rdg services: Kafka logs to a file under the state dir. -->
<Configuration status="warn">
  <Appenders>
    <RollingFile name="file" fileName="{log}" filePattern="{log}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="org.apache.kafka.controller" level="info"/>
    <Logger name="state.change.logger" level="warn"/>
  </Loggers>
</Configuration>
"""


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 without padding, like Kafka's Uuid."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):  # Kafka avoids these too: they read as CLI flags
            return value


def scram_format_args(creds: LocalCredentials) -> list[str]:
    """``--add-scram`` arguments for the storage format: the broker's and every role's SCRAM
    credential, as salt + salted password (PBKDF2, what the broker stores), so no password appears
    on a command line."""
    users = {BROKER_PRINCIPAL: creds.broker_password} | {PRINCIPALS[r]: creds.password(r) for r in ROLES}
    args: list[str] = []
    for user, password in users.items():
        salt = os.urandom(24)
        salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
        b64 = base64.b64encode
        args += ["--add-scram", f'{SCRAM_MECHANISM}=[name={user},iterations={SCRAM_ITERATIONS},'
                                f'salt="{b64(salt).decode()}",saltedpassword="{b64(salted).decode()}"]']
    return args


def kafka_acls(spec: GraphSpec, group_prefix: str) -> list[AclBinding]:
    """Least-privilege ACLs per role for ``spec``'s topics (``admin`` and the broker are super users;
    ``reader`` has no Kafka access):

    - ``upstream`` writes the source and catalog topics and nothing else;
    - ``app`` (processors and sinks) reads source, catalog and graph topics, writes graph and DLQ
      topics, uses its consumer groups and transactional ids (prefixed by the group prefix), and
      Quix Streams' own changelog/repartition topics.
    """
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    def allow(role: Role, rtype: ResourceType, name: str, pattern: ResourcePatternType,
              *ops: AclOperation) -> list[AclBinding]:
        return [AclBinding(rtype, name, pattern, f"User:{PRINCIPALS[role]}", "*", op, AclPermissionType.ALLOW)
                for op in ops]

    T, G, X = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    LIT, PRE = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    R, W, D, DC, A = (AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE,
                      AclOperation.DESCRIBE_CONFIGS, AclOperation.ALL)
    sources = list(spec.sources)
    graph = [graph_topic("node", n) for n in spec.nodes] + [graph_topic("edge", e) for e in spec.edges]
    out: list[AclBinding] = []
    for t in sources:
        out += allow("upstream", T, t, LIT, W, D)
        out += allow("app", T, t, LIT, R, D, DC)
    for t in graph:
        out += allow("app", T, t, LIT, R, W, D, DC)
    for t in sources + graph:
        out += allow("app", T, dlq_topic(t), LIT, W, D, DC)
    out += allow("app", G, group_prefix, PRE, R, D)
    out += allow("app", X, group_prefix, PRE, W, D)
    for internal in ("changelog__", "repartition__"):
        out += allow("app", T, internal, PRE, A)
    return out


class KafkaService(Service):
    """Combined broker+controller on RDG_KAFKA_PORT / RDG_KAFKA_CONTROLLER_PORT."""

    name = "kafka"

    def __init__(self, settings: Settings, *, benchmark_plaintext_port: int | None = None) -> None:
        """``benchmark_plaintext_port``: for ``benchmarks/bench_security.py`` only, which measures what
        SCRAM costs against the same broker: an extra PLAINTEXT listener on loopback whose anonymous
        principal is a super user. Nothing in the platform sets it."""
        super().__init__(settings)
        self.benchmark_plaintext_port = benchmark_plaintext_port

    @property
    def port(self) -> int:
        return self.settings.kafka.port

    @property
    def bind_host(self) -> str:
        return self.settings.kafka.bind_host

    @property
    def tls_dir(self) -> Path:
        """The broker's TLS material: ``ca.crt`` is what SASL_SSL clients trust (``RDG_KAFKA_SSL_CA``)."""
        return self.settings.state_dir / "secrets" / "kafka-tls"

    def tls_keystore(self) -> tuple[Path, str]:
        """The SASL_SSL listener's PKCS12 keystore (server key + certificate for the loopback names and
        the bind host, from the local CA) and its password, created once per state dir."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.serialization import pkcs12

        d = self.tls_dir
        ips = ["127.0.0.1"] + ([self.bind_host] if self.bind_host not in ("127.0.0.1", "0.0.0.0", "localhost") else [])
        crt, key = ensure_leaf(d, "broker", dns=["localhost"], ips=ips, usages=SERVER)
        pw_file, store = d / "keystore.password", d / "broker.p12"
        if not pw_file.is_file():
            write_private(pw_file, secrets.token_urlsafe(24).encode())
        password = pw_file.read_text()
        if not store.is_file() or store.stat().st_mtime < crt.stat().st_mtime:
            loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            blob = pkcs12.serialize_key_and_certificates(
                b"broker", loaded, x509.load_pem_x509_certificate(crt.read_bytes()),
                [x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())],
                serialization.BestAvailableEncryption(password.encode()))
            write_private(store, blob)
        return store, password

    def ports(self) -> dict[str, int]:
        ports = {"broker": self.settings.kafka.port, "controller": self.settings.kafka.controller_port}
        if self.settings.kafka.ssl_port is not None:
            ports["SASL_SSL"] = self.settings.kafka.ssl_port
        if self.benchmark_plaintext_port is not None:
            ports["benchmark plaintext"] = self.benchmark_plaintext_port
        return ports

    @property
    def properties_file(self) -> Path:
        return self.conf_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kraft-logs"

    def server_properties(self) -> str:
        """The broker config; rewritten on every start so port changes take effect."""
        k = self.settings.kafka
        bind, host = self.bind_host, self.host
        creds = load_or_create(self.settings.state_dir)
        broker_pw = creds.broker_password
        plain = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{BROKER_PRINCIPAL}" '
                 f'password="{broker_pw}" user_{BROKER_PRINCIPAL}="{broker_pw}";')
        scram = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{BROKER_PRINCIPAL}" '
                 f'password="{broker_pw}";')
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{k.controller_port}",
            # Clients (and the broker itself) authenticate with SCRAM; the controller listener, on
            # loopback only, with PLAIN against the broker's own static identity (SCRAM credentials
            # live in the metadata log, which the controller serves, so it cannot use them).
            "listeners": f"CLIENT://{bind}:{k.port},CONTROLLER://{host}:{k.controller_port}",
            "advertised.listeners": f"CLIENT://{host}:{k.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "CLIENT",
            "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.client.sasl.enabled.mechanisms": SCRAM_MECHANISM,
            f"listener.name.client.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": scram,
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{BROKER_PRINCIPAL};User:{PRINCIPALS['admin']}",
            "log.dirs": str(self.log_dirs),
            "num.partitions": "2",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "background.threads": "2",
            "log.retention.hours": "168",
        }
        if k.ssl_port is not None:  # SASL_SSL: SCRAM over TLS, the server's key in a PKCS12 keystore
            keystore, password = self.tls_keystore()
            secure = f"SECURE://{bind}:{k.ssl_port}"
            props["listeners"] += "," + secure
            props["advertised.listeners"] += f",SECURE://{host}:{k.ssl_port}"
            props["listener.security.protocol.map"] += ",SECURE:SASL_SSL"
            props["listener.name.secure.sasl.enabled.mechanisms"] = SCRAM_MECHANISM
            props[f"listener.name.secure.{SCRAM_MECHANISM.lower()}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;")
            props["listener.name.secure.ssl.keystore.type"] = "PKCS12"
            props["listener.name.secure.ssl.keystore.location"] = str(keystore)
            props["listener.name.secure.ssl.keystore.password"] = password
            props["listener.name.secure.ssl.key.password"] = password
        if self.benchmark_plaintext_port is not None:
            bench = f"BENCH://127.0.0.1:{self.benchmark_plaintext_port}"
            props["listeners"] += "," + bench
            props["advertised.listeners"] += "," + bench
            props["listener.security.protocol.map"] += ",BENCH:PLAINTEXT"
            props["super.users"] += ";User:ANONYMOUS"
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def prepare(self, jars: Path) -> None:
        """Write configs and format the KRaft storage once (format refuses a formatted dir)."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        write_private(self.properties_file, self.server_properties())
        (self.conf_dir / "log4j2.xml").write_text(_LOG4J2_XML.replace("{log}", str(self.log_file)))
        if (self.log_dirs / "meta.properties").exists():
            return
        cluster_id_file = self.data_dir / "cluster.id"
        if not cluster_id_file.exists():
            cluster_id_file.write_text(new_cluster_id())
        cmd = [
            "java",
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            *self._common_props(),
            "-cp",
            f"{jars}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id_file.read_text().strip(),
            "-c",
            str(self.properties_file),
            *scram_format_args(load_or_create(self.settings.state_dir)),
        ]
        with self.out_file.open("ab") as out:
            result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kafka storage format failed (exit {result.returncode}); see {self.out_file}")

    def _common_props(self) -> list[str]:
        return [
            f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.log_dir}",
        ]

    def command(self, jars: Path) -> list[str]:
        return [
            *KAFKA_JVM_OPTS,
            *self.marker_args(),
            *self._common_props(),
            "-cp",
            f"{jars}/*",
            "kafka.Kafka",
            str(self.properties_file),
        ]

    def admin_config(self) -> dict[str, str]:
        """librdkafka config of the local ``admin`` principal (probes, ACL provisioning)."""
        return {"bootstrap.servers": f"{self.host}:{self.port}", "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": SCRAM_MECHANISM, "sasl.username": PRINCIPALS["admin"],
                "sasl.password": load_or_create(self.settings.state_dir).password("admin")}

    def provision(self) -> None:
        """Create the ACLs of every platform role for the configured model (idempotent: Kafka
        keeps one copy of an identical binding)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.admin_config())
        spec = self.settings.load_spec()
        bindings = kafka_acls(spec, self.settings.streaming.group_prefix)
        for _binding, fut in admin.create_acls(bindings, request_timeout=30).items():
            fut.result(timeout=30)

    def probe(self) -> Probe:
        """Healthy = the broker returns cluster metadata listing itself (not just an open port)."""
        if not port_is_open(self.host, self.port):
            return Probe(False, detail="port not accepting connections")
        try:
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({**self.admin_config(), "log_level": 0})
            metadata = admin.list_topics(timeout=3)
        except Exception as exc:  # noqa: BLE001 - any failure just means "not ready yet"
            return Probe(False, detail=f"metadata request failed: {exc}")
        if not metadata.brokers:
            return Probe(False, detail="metadata has no brokers yet")
        return Probe(True, version=KAFKA_VERSION, detail=f"{len(metadata.topics)} topics")
