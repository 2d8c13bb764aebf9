"""Kafka 4.x in KRaft mode: one JVM that is both broker and controller.

Single-node settings (replication factor 1 everywhere, no initial rebalance delay, explicit topic
creation only) make the local cluster behave like production for our code while staying small.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from rdg_platform.local_services.base import Probe, Service, port_is_open
from rdg_platform.local_services.fetch import KAFKA_VERSION

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


class KafkaService(Service):
    """Combined broker+controller on RDG_KAFKA_PORT / RDG_KAFKA_CONTROLLER_PORT."""

    name = "kafka"

    @property
    def port(self) -> int:
        return self.settings.kafka.port

    @property
    def bind_host(self) -> str:
        return self.settings.kafka.bind_host

    def ports(self) -> dict[str, int]:
        return {"broker": self.settings.kafka.port, "controller": self.settings.kafka.controller_port}

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
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{k.controller_port}",
            "listeners": f"PLAINTEXT://{bind}:{k.port},CONTROLLER://{host}:{k.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{k.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def prepare(self, jars: Path) -> None:
        """Write configs and format the KRaft storage once (format refuses a formatted dir)."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(self.server_properties())
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

    def probe(self) -> Probe:
        """Healthy = the broker returns cluster metadata listing itself (not just an open port)."""
        if not port_is_open(self.host, self.port):
            return Probe(False, detail="port not accepting connections")
        try:
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": f"{self.host}:{self.port}", "log_level": 0})
            metadata = admin.list_topics(timeout=3)
        except Exception as exc:  # noqa: BLE001 - any failure just means "not ready yet"
            return Probe(False, detail=f"metadata request failed: {exc}")
        if not metadata.brokers:
            return Probe(False, detail="metadata has no brokers yet")
        return Probe(True, version=KAFKA_VERSION, detail=f"{len(metadata.topics)} topics")
