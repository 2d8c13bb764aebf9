"""Benchmark `rdg services up`: cold (empty jar cache and empty Maven repo) vs warm (cached jars).

Cold start is what a fresh machine or CI runner pays once; warm start is what every developer pays
per new state dir. Each run uses its own state dir and free ports so it never touches a running
instance, and everything it starts is stopped and purged afterwards. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from rdg_platform.local_services import ServiceManager
from rdg_platform.local_services.base import free_ports
from rdg_platform.settings import load_settings

PORT_SETTINGS = ("RDG_KAFKA_PORT", "RDG_KAFKA_CONTROLLER_PORT", "RDG_CASSANDRA_PORT",
                 "RDG_CASSANDRA_STORAGE_PORT", "RDG_CASSANDRA_JMX_PORT", "RDG_REGISTRY_PORT")


def _timed_up(
    label: str, state_dir: Path, cache_dir: Path | None, maven_repo: Path | None, quiet: bool
) -> dict[str, str]:
    """Run one up() in an isolated environment and return a table row; always tears down."""
    env = {"RDG_STATE_DIR": str(state_dir)}
    env.update(zip(PORT_SETTINGS, map(str, free_ports(len(PORT_SETTINGS))), strict=True))
    if cache_dir is not None:
        env["RDG_CACHE_DIR"] = str(cache_dir)
    if maven_repo is not None:
        env["RDG_MAVEN_REPO_LOCAL"] = str(maven_repo)
    manager = ServiceManager(load_settings(env), echo=(lambda _msg: None) if quiet else print)
    started = time.monotonic()
    try:
        manager.up()
        outcome = "ok"
    except Exception as exc:  # noqa: BLE001 - report the failure in the table
        outcome = f"failed: {str(exc).splitlines()[0]}"
    elapsed = time.monotonic() - started
    manager.down(purge=True)
    return {"run": label, "seconds": f"{elapsed:.1f}", "outcome": outcome}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-cold", action="store_true", help="only measure warm starts (no downloads)")
    parser.add_argument(
        "--warm-runs", type=int, default=2, help="number of warm starts to measure (default 2)"
    )
    parser.add_argument("--quiet", action="store_true", help="hide progress output from up()")
    args = parser.parse_args()

    rows: list[dict[str, str]] = []
    scratch = Path(tempfile.mkdtemp(prefix="rdg-bench-"))
    try:
        if not args.skip_cold:
            rows.append(
                _timed_up(
                    "cold (empty cache + empty ~/.m2)",
                    scratch / "cold-state",
                    scratch / "cache",
                    scratch / "m2",
                    args.quiet,
                )
            )
        for i in range(args.warm_runs):
            rows.append(
                _timed_up(
                    f"warm #{i + 1} (cached jars, new state dir)",
                    scratch / f"warm-{i}",
                    None,
                    None,
                    args.quiet,
                )
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print("| run | `services up` seconds | outcome |")
    print("|---|---:|---|")
    for row in rows:
        print(f"| {row['run']} | {row['seconds']} | {row['outcome']} |")


if __name__ == "__main__":
    main()
