"""Benchmark `rdg services up`: cold (empty jar cache and empty Maven repo) vs warm (cached jars).

Cold start is what a fresh machine or CI runner pays once; warm start is what every developer pays
per new state dir. Each run uses its own state dir and free ports so it never touches a running
instance, and everything it starts is stopped and purged afterwards. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from rdg_platform.config import Settings
from rdg_platform.local_services import ServiceManager
from rdg_platform.local_services.base import SERVICE_PORT_ENV_VARS, free_ports
from rdg_platform.local_services.fetch import MAVEN_REPO_ENV


def _timed_up(
    label: str, state_dir: Path, cache_dir: Path | None, maven_repo: Path | None, quiet: bool
) -> dict[str, str]:
    """Run one up() in an isolated environment and return a table row; always tears down."""
    os.environ["RDG_STATE_DIR"] = str(state_dir)
    for var, port in zip(SERVICE_PORT_ENV_VARS, free_ports(len(SERVICE_PORT_ENV_VARS)), strict=True):
        os.environ[var] = str(port)
    if cache_dir is not None:
        os.environ["RDG_CACHE_DIR"] = str(cache_dir)
    else:
        os.environ.pop("RDG_CACHE_DIR", None)
    if maven_repo is not None:
        os.environ[MAVEN_REPO_ENV] = str(maven_repo)
    else:
        os.environ.pop(MAVEN_REPO_ENV, None)
    manager = ServiceManager(Settings(), echo=(lambda _msg: None) if quiet else print)
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
