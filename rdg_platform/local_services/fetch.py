"""Fetch the services' jars from Maven Central with ``mvn``, once, into the shared cache.

Why mvn and not direct downloads: the machines only reach Maven Central, and letting Maven resolve
the transitive closure (Kafka ~50 jars, Cassandra ~100) from a pinned pom is the only way to get a
consistent classpath without vendoring jars. The result is copied to ``cache_dir/jars/<service>``
and marked complete, so later ``up`` calls never touch the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from rdg_platform.local_services.base import file_lock
from rdg_platform.settings import Settings

# Mirrored from deps/maven/pom.xml (the cache marker records them so a version bump refetches).
KAFKA_VERSION = "4.4.0"
CASSANDRA_VERSION = "5.0.9"
APICURIO_VERSION = "2.6.13.Final"
S3PROXY_VERSION = "2.6.0"
VERSIONS: dict[str, str] = {
    "kafka": KAFKA_VERSION,
    "cassandra": CASSANDRA_VERSION,
    "registry": APICURIO_VERSION,
    "s3proxy": S3PROXY_VERSION,
}
# Kafka and Cassandra need their jars copied; the registry is one zip assembly that gets unpacked.
_GOALS: dict[str, list[str]] = {
    "kafka": ["dependency:copy-dependencies", "-DincludeScope=runtime"],
    "cassandra": ["dependency:copy-dependencies", "-DincludeScope=runtime"],
    "registry": ["dependency:unpack-dependencies"],
    "s3proxy": ["dependency:copy-dependencies", "-DincludeScope=runtime"],
}
_MARKER = ".rdg-fetched"
# Set to a directory to make mvn use a separate local repository (the cold-start benchmark does).

Echo = Callable[[str], None]


class FetchError(RuntimeError):
    """mvn is missing or could not resolve the jars; the message carries mvn's last lines."""


def pom_path() -> Path:
    """Locate ``deps/maven/pom.xml`` at the project root (the package is installed editable)."""
    return Path(__file__).resolve().parents[2] / "deps" / "maven" / "pom.xml"


def jar_dir(settings: Settings, service: str) -> Path:
    """Where the given service's jars live once fetched."""
    return settings.cache_dir / "jars" / service


def is_fetched(settings: Settings, service: str) -> bool:
    """True when the cache holds a complete copy for the pinned version (no mvn needed)."""
    marker = jar_dir(settings, service) / _MARKER
    return marker.is_file() and marker.read_text().strip() == VERSIONS[service]


def ensure_jars(settings: Settings, service: str, echo: Echo = print, maven_repo: Path | None = None) -> Path:
    """Return the service's jar directory, running mvn first if the cache lacks it.

    Output goes to a staging directory that is renamed into place only after mvn succeeds, so an
    interrupted download never leaves a half-filled directory that looks complete.
    """
    target = jar_dir(settings, service)
    if is_fetched(settings, service):
        return target
    with file_lock(settings.cache_dir / "jars" / f".{service}.lock"):
        if is_fetched(settings, service):  # another process fetched while we waited
            return target
        mvn = shutil.which("mvn")
        if mvn is None:
            raise FetchError(
                "`mvn` is not on PATH; install Maven 3.8+ (apt-get install maven) to fetch the jars"
            )
        pom = pom_path()
        if not pom.is_file():
            raise FetchError(f"cannot find the services pom at {pom} (the source tree's deps/maven; rdg runs from an editable install)")
        staging = target.with_name(f"{service}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        markers = staging.with_name(staging.name + "-markers")
        cmd = [
            mvn,
            "-B",
            "-f",
            str(pom),
            "-P",
            service,
            *_GOALS[service],
            f"-DoutputDirectory={staging}",
            # unpack-dependencies skips artifacts it has a marker for; keep markers out of the repo
            # tree (default is services/target) and fresh per fetch so unpacking always happens.
            f"-DmarkersDirectory={markers}",
        ]
        repo = maven_repo or settings.maven_repo_local
        if repo is not None:
            cmd.append(f"-Dmaven.repo.local={repo}")
        echo(f"fetching {service} {VERSIONS[service]} from Maven Central (first run only) ...")
        _run_mvn(cmd, service, echo)
        shutil.rmtree(markers, ignore_errors=True)
        (staging / _MARKER).write_text(VERSIONS[service] + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        size_mb = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) / 1e6
        echo(f"fetched {service}: {size_mb:.0f} MB in {target}")
        return target


_DOWNLOADED = re.compile(r"Downloaded from \S+: \S+ \((?P<size>[\d.]+) (?P<unit>[kKMG]?B)")


def _run_mvn(cmd: list[str], service: str, echo: Echo) -> None:
    """Run mvn, echoing a progress line every few seconds instead of Maven's wall of output."""
    started = time.monotonic()
    tail: list[str] = []
    count, total_kb, last_report = 0, 0.0, started
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-40:]
        match = _DOWNLOADED.search(line)
        if match:
            count += 1
            factor = {"B": 1 / 1024, "kB": 1.0, "KB": 1.0, "MB": 1024.0, "GB": 1024.0 * 1024}
            total_kb += float(match["size"]) * factor.get(match["unit"], 1.0)
        now = time.monotonic()
        if now - last_report >= 5:
            echo(f"  {service}: {count} files, {total_kb / 1024:.1f} MB downloaded ({now - started:.0f}s)")
            last_report = now
    if proc.wait() != 0:
        raise FetchError(f"mvn failed for {service} (exit {proc.returncode}):\n" + "\n".join(tail))
