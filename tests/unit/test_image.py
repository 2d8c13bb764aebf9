"""deploy/Dockerfile, checked without building it (no builder runs in CI, see README "Deploying to
Kubernetes"): every path it copies exists, the Spark jars are resolved at build time from the pom the
rebuild job uses, and every command the rendered manifests run is an entry point of the package."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import tomllib
from pathlib import Path

from rdg_platform.launcher.manifests import load_values, render

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#") and len(line.split(None, 1)) == 2]


def test_copied_paths_exist() -> None:
    copies = [args.split() for op, args in _instructions() if op == "COPY" and "--from" not in args]
    assert copies
    for parts in copies:
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"


def test_spark_jars_are_baked_in_from_the_rebuild_pom() -> None:
    from rdg_platform.lakehouse.spark import default_pom

    assert default_pom() == ROOT / "deps" / "maven" / "spark-pom.xml"
    assert "mvn -B -q -f /build/spark-pom.xml dependency:copy-dependencies" in DOCKERFILE
    # Where the runtime looks for them: <RDG_CACHE_DIR>/jars/spark (rdg_platform/resources.py).
    assert "RDG_CACHE_DIR=/opt/rdg/cache" in DOCKERFILE
    assert "COPY --from=jars /jars/spark /opt/rdg/cache/jars/spark" in DOCKERFILE
    v = load_values(ROOT / "deploy" / "values" / "local.yaml")
    assert v.settings_data()["RDG_CACHE_DIR"] == "/opt/rdg/cache"


def test_manifest_commands_are_entry_points_of_the_package() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    commands = set()
    for o in render(load_values(ROOT / "deploy" / "values" / "prod.yaml")):
        if o["kind"] == "Deployment":
            for c in o["spec"]["template"]["spec"]["containers"]:
                commands.add(tuple(c["command"]))
    exe = {c[0] for c in commands}
    assert exe == {"python", "rdg", "dagster-webserver", "dagster-daemon"}
    assert "rdg" in scripts
    bindir = Path(sys.executable).parent
    for tool in ("dagster-webserver", "dagster-daemon"):  # console scripts of pinned dependencies
        assert (bindir / tool).exists() or shutil.which(tool), tool
    for c in commands:
        if c[:3] == ("python", "-m", "rdg_platform.streaming"):
            assert importlib.util.find_spec("rdg_platform.streaming.__main__") is not None
            assert c[3] == "run"
        if c[0] == "rdg":
            assert c[1] == "serve"
        if c[0] == "dagster-daemon" and c[1] == "run":
            assert c[-1].endswith("/workspace.yaml")
