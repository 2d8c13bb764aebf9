"""Browser checks of the Dagster UI with Debian's Chromium driven by Playwright (no downloaded browser).

    python tests/ui/ui_check.py http://127.0.0.1:3000 --screenshots /tmp/shots

Checks: (1) the global asset graph renders and lists every asset group; (2) an archive partition is
launched through the webserver (the same GraphQL ``launchPartitionBackfill``/``launchRun`` the UI's
Materialize dialog sends) and its run page renders in the browser with the partition; (3) a streaming
app's page shows its health check results (``app_running``). Exits non-zero with a message on failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
GROUPS = ("archive", "backfill", "maintenance", "streaming_apps", "graph", "dbt")
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""


def _gql(page: Any, base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = page.request.post(f"{base}/graphql", data=json.dumps({"query": query, "variables": variables or {}}),
                             headers={"Content-Type": "application/json"})
    body = resp.json()
    if "errors" in body:
        raise AssertionError(f"GraphQL error: {body['errors']}")
    return body["data"]  # type: ignore[no-any-return]


def dismiss_popups(page: Any) -> None:
    """Dagster OSS greets a fresh instance with a community dialog; skip it if it is there."""
    try:
        page.get_by_role("button", name="Skip").click(timeout=3_000)
    except Exception:
        pass


def check_asset_graph(page: Any, base: str, shots: Path | None) -> None:
    page.goto(f"{base}/asset-groups", wait_until="domcontentloaded")
    dismiss_popups(page)
    page.wait_for_selector("text=archive", timeout=60_000)
    for g in GROUPS:
        page.wait_for_selector(f"text={g}", timeout=30_000)
    if shots:
        dismiss_popups(page)
        page.screenshot(path=str(shots / "asset_graph.png"), full_page=True)


def launch_archive_partition(page: Any, base: str, shots: Path | None, partition: str) -> str:
    data = _gql(page, base, LAUNCH, {"params": {
        "selector": {"repositoryLocationName": "rdg_platform", "repositoryName": "__repository__",
                     "jobName": "archive_hourly_job",
                     "assetSelection": [{"path": ["archive", "member_login"]}]},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
        "mode": "default", "runConfigData": {}}})
    res = data["launchRun"]
    if res["__typename"] != "LaunchRunSuccess":
        raise AssertionError(f"launch failed: {res}")
    run_id: str = res["run"]["runId"]
    page.goto(f"{base}/runs/{run_id}", wait_until="domcontentloaded")
    page.wait_for_selector(f"text={partition}", timeout=60_000)
    if shots:
        page.screenshot(path=str(shots / "archive_run.png"), full_page=True)
    return run_id


def check_app_health(page: Any, base: str, app: str, shots: Path | None, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        page.goto(f"{base}/assets/streaming/{app}?view=checks", wait_until="domcontentloaded")
        dismiss_popups(page)
        try:
            page.wait_for_selector("text=app_running", timeout=20_000)
            page.wait_for_selector("text=consumer_lag_below_threshold", timeout=5_000)
            # A result exists once the health sensor ticked: the check shows Passed/Failed, not "Not evaluated".
            page.wait_for_selector("text=/Passed|Failed/", timeout=10_000)
            break
        except Exception:
            if time.monotonic() > deadline:
                if shots:
                    page.screenshot(path=str(shots / "app_health_fail.png"), full_page=True)
                raise
    if shots:
        dismiss_popups(page)
        page.screenshot(path=str(shots / "app_health.png"), full_page=True)


def run(base: str, app: str, partition: str, shots: Path | None, executable: str = CHROMIUM) -> None:
    from playwright.sync_api import sync_playwright

    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            check_asset_graph(page, base, shots)
            launch_archive_partition(page, base, shots, partition)
            check_app_health(page, base, app, shots)
        finally:
            browser.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base_url")
    ap.add_argument("--app", required=True, help="a streaming app name")
    ap.add_argument("--partition", default="2024-05-01-10:00")
    ap.add_argument("--screenshots", type=Path)
    args = ap.parse_args()
    try:
        run(args.base_url.rstrip("/"), args.app, args.partition, args.screenshots)
    except Exception as exc:
        print(f"UI check failed: {exc}", file=sys.stderr)
        return 1
    print("UI checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
