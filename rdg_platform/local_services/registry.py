"""Apicurio Registry 2.6 as the Confluent-compatible schema registry (ccompat API).

Apicurio ships a self-contained Quarkus "all" assembly on Maven Central, unlike Confluent's
registry, so it is the registry these machines can actually run. Storage is its H2 SQL store in a
file under the state directory, so schema ids survive a restart: records already in Kafka (and the
Iceberg archive) name those ids, and an in-memory registry could hand the same id to another schema.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from rdg_platform.local_services.base import Probe, Service, is_loopback, port_is_open
from rdg_platform.local_services.fetch import APICURIO_VERSION

REGISTRY_JVM_OPTS = [
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:CICompilerCount=2",
    "-XX:TieredStopAtLevel=1",
]


class RegistryService(Service):
    """HTTP on RDG_REGISTRY_PORT; ccompat at /apis/ccompat/v7."""

    name = "registry"

    @property
    def port(self) -> int:
        return self.settings.registry.port

    @property
    def bind_host(self) -> str:
        return self.settings.registry.bind_host

    def ports(self) -> dict[str, int]:
        return {"http": self.settings.registry.port}

    @property
    def out_file(self) -> Path:
        # Quarkus logs to stdout; keep one file so the log tail on failure shows everything.
        return self.log_file

    def prepare(self, jars: Path) -> None:
        if not is_loopback(self.bind_host):
            raise RuntimeError(
                f"RDG_REGISTRY_BIND_HOST={self.bind_host}: the local Apicurio registry has no authentication "
                "(Apicurio 2.6 authenticates only through an OIDC server, which is not part of the local "
                "setup), so it binds to loopback only; point RDG_REGISTRY_URL at a secured registry instead")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def command(self, jars: Path) -> list[str]:
        runner = jars / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
        return [
            *REGISTRY_JVM_OPTS,
            *self.marker_args(),
            f"-DREGISTRY_DATASOURCE_URL=jdbc:h2:file:{self.data_dir / 'registry_db'}",
            f"-Dquarkus.http.port={self.settings.registry.port}",
            f"-Dquarkus.http.host={self.bind_host}",
            "-Dquarkus.log.console.color=false",
            "-jar",
            str(runner),
        ]

    def probe(self) -> Probe:
        """Healthy = the ccompat subjects endpoint answers 200; version from system info."""
        s = self.settings
        if not port_is_open(self.host, s.registry.port):
            return Probe(False, detail="port not accepting connections")
        base = f"http://{self.host}:{s.registry.port}"
        try:
            response = httpx.get(f"{base}/apis/ccompat/v7/subjects", timeout=5)
            if response.status_code != 200:
                return Probe(False, detail=f"GET /apis/ccompat/v7/subjects -> {response.status_code}")
            version = APICURIO_VERSION
            info = httpx.get(f"{base}/apis/registry/v2/system/info", timeout=5)
            if info.status_code == 200:
                version = str(info.json().get("version", version))
        except (httpx.HTTPError, ValueError) as exc:
            return Probe(False, detail=f"HTTP request failed: {exc}")
        return Probe(True, version=version)
