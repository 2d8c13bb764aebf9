"""S3Proxy 2.6 as the local S3-compatible object store for the Iceberg ``s3://`` warehouse.

Why S3Proxy: it is Apache-2.0 (MinIO's server is AGPL), it is on Maven Central so it is fetched and
run exactly like Kafka and Cassandra, and it speaks the real S3 REST API with AWS signature v2/v4, so
pyiceberg's pyarrow FileIO and Iceberg-Java's S3FileIO talk to it as they would to AWS S3. Blobs are
stored by jclouds' ``filesystem`` provider: one directory per bucket under
``$RDG_STATE_DIR/data/s3proxy``.

Security matches the other local services: S3Proxy binds to loopback only and requires signed
requests. Its identity/credential pair is generated randomly once per state directory and kept in a
mode-0600 file under ``$RDG_STATE_DIR/secrets``; the properties file that hands it to S3Proxy is
0600 too, and neither value is ever put on a command line or in a log line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from rdg_platform.local_services.base import Probe, Service, port_is_open
from rdg_platform.local_services.fetch import S3PROXY_VERSION
from rdg_platform.settings import Settings

# S3Proxy accepts any region in the signature scope; clients need one, so all of ours use this.
S3_REGION = "us-east-1"
# The bucket the local Iceberg warehouse lives in (``s3://rdg-warehouse/...``).
DEFAULT_BUCKET = "rdg-warehouse"

# What an S3 client process needs in its environment to write to S3Proxy 2.6.0. AWS SDKs since early
# 2025 (pyarrow's C++ SDK 1.11.x, Java SDK 2.30+) default to "flexible checksums": uploads are sent as
# aws-chunked bodies with a trailing CRC (x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER over
# HTTP chunked transfer), which S3Proxy 2.6.0 answers with XAmzContentSHA256Mismatch. "when_required"
# restores plain signed uploads. The SDKs read it only from the environment (or ~/.aws/config), so the
# entry point that builds a client's environment adds these; this module never touches os.environ.
CLIENT_ENV: dict[str, str] = {"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"}

S3PROXY_JVM_OPTS = [
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:CICompilerCount=2",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
]

_LOGBACK_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by rdg services: S3Proxy logs to a file under the state dir (INFO; Jetty's DEBUG off). -->
<configuration>
  <appender name="file" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file>
    <encoder><pattern>%d{{ISO8601}} %-5level [%thread] %logger{{36}} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="file"/></root>
  <logger name="org.gaul.shaded" level="WARN"/>
  <logger name="org.eclipse.jetty" level="WARN"/>
  <logger name="jclouds" level="WARN"/>
  <logger name="org.jclouds" level="WARN"/>
</configuration>
"""


@dataclass(frozen=True)
class S3Credentials:
    """An S3 access key pair; ``repr`` masks the secret so it never lands in a log by accident."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


def credentials_file(state_dir: Path) -> Path:
    """Where the local S3Proxy's key pair is kept (mode 0600)."""
    return state_dir / "secrets" / "s3proxy.json"


def load_or_create_credentials(state_dir: Path) -> S3Credentials:
    """The state directory's S3 key pair, generated on first use.

    Created with ``O_EXCL`` and mode 0600 in one step, so a concurrent caller either wins the
    creation or reads the winner's file, and the secret is never readable by other users.
    """
    path = credentials_file(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    candidate = {
        "access_key_id": "rdg" + secrets.token_hex(8).upper(),
        "secret_access_key": secrets.token_urlsafe(30),
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            json.dump(candidate, handle)
    data = json.loads(path.read_text())
    return S3Credentials(str(data["access_key_id"]), str(data["secret_access_key"]))


# ----------------------------------------------------------------------------------- signed requests
def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_headers(method: str, host: str, path: str, creds: S3Credentials, region: str = S3_REGION,
                  now: dt.datetime | None = None) -> dict[str, str]:
    """AWS Signature V4 headers for a bodiless S3 request (``path`` already URI-encoded, no query).

    Small and dependency-free on purpose: the health probe and bucket creation are the only S3 calls
    the service manager makes, and pulling in boto for them would be a large dependency.
    """
    now = now or dt.datetime.now(dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + creds.secret_access_key).encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    return {**headers, "authorization": auth}


def s3_request(method: str, endpoint: str, path: str, creds: S3Credentials, timeout: float = 5.0) -> httpx.Response:
    """Send one signed, bodiless S3 request (``GET /`` lists buckets, ``PUT /<bucket>`` creates one)."""
    url = httpx.URL(endpoint)
    host = url.host if url.port is None else f"{url.host}:{url.port}"
    encoded = quote(path, safe="/-_.~")
    headers = sigv4_headers(method, host, encoded, creds)
    return httpx.request(method, f"{endpoint.rstrip('/')}{encoded}", headers=headers, timeout=timeout)


def ensure_bucket(endpoint: str, creds: S3Credentials, bucket: str) -> None:
    """Create ``bucket`` unless it exists (an Iceberg warehouse's bucket must exist before writes)."""
    response = s3_request("PUT", endpoint, f"/{bucket}", creds)
    if response.status_code == 200:
        return
    if response.status_code == 409 and "BucketAlreadyOwnedByYou" in response.text:
        return
    raise RuntimeError(f"creating bucket {bucket!r} at {endpoint} failed: {response.status_code} {response.text[:300]}")


# ---------------------------------------------------------------------------------------- service
class S3ProxyService(Service):
    """S3 API on ``RDG_S3_BIND_HOST:RDG_S3_PORT`` (default 127.0.0.1:8333), filesystem blobs under
    ``data/s3proxy``."""

    name = "s3proxy"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._port = settings.s3.port
        self._bind_host = settings.s3.bind_host

    @property
    def port(self) -> int:
        return self._port

    @property
    def bind_host(self) -> str:
        return self._bind_host

    def ports(self) -> dict[str, int]:
        return {"s3": self._port}

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL clients use (``s3.endpoint`` for Iceberg)."""
        return f"http://{self.host}:{self._port}"

    @property
    def region(self) -> str:
        return S3_REGION

    @property
    def credentials(self) -> S3Credentials:
        """This state directory's key pair (created on first access)."""
        return load_or_create_credentials(self.settings.state_dir)

    @property
    def properties_file(self) -> Path:
        return self.conf_dir / "s3proxy.properties"

    @property
    def out_file(self) -> Path:
        # Before logback is configured the JVM may still print to stdout; keep one file for both.
        return self.log_file

    def prepare(self, jars: Path) -> None:
        """Write the 0600 properties file (credentials, loopback endpoint, blob dir) and logback config."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        creds = self.credentials
        props = {
            "s3proxy.endpoint": f"http://{self.bind_host}:{self._port}",
            "s3proxy.authorization": "aws-v2-or-v4",
            "s3proxy.identity": creds.access_key_id,
            "s3proxy.credential": creds.secret_access_key,
            # Current AWS SDKs send x-amz-checksum-mode on reads; 2.6.0 rejects unknown x-amz-* headers
            # with 501 unless told to ignore them (see CLIENT_ENV for the write side).
            "s3proxy.ignore-unknown-headers": "true",
            "jclouds.provider": "filesystem",
            "jclouds.filesystem.basedir": str(self.data_dir),
        }
        text = "".join(f"{key}={value}\n" for key, value in props.items())
        fd = os.open(self.properties_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(self.properties_file, 0o600)  # an older file keeps its mode through O_TRUNC
        (self.conf_dir / "logback.xml").write_text(_LOGBACK_XML.format(log=self.log_file))

    def command(self, jars: Path) -> list[str]:
        return [
            *S3PROXY_JVM_OPTS,
            *self.marker_args(),
            f"-Dlogback.configurationFile={self.conf_dir / 'logback.xml'}",
            "-cp",
            f"{jars}/*",
            "org.gaul.s3proxy.Main",
            "--properties",
            str(self.properties_file),
        ]

    def probe(self) -> Probe:
        """Healthy = a SigV4-signed ListBuckets with this state dir's keys answers 200."""
        if not port_is_open(self.host, self._port):
            return Probe(False, detail="port not accepting connections")
        try:
            response = s3_request("GET", self.endpoint, "/", self.credentials)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            return Probe(False, detail=f"HTTP request failed: {exc}")
        if response.status_code != 200 or "ListAllMyBucketsResult" not in response.text:
            return Probe(False, detail=f"signed GET / (ListBuckets) -> {response.status_code}")
        return Probe(True, version=S3PROXY_VERSION)
