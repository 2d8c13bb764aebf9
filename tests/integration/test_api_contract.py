"""The live API against its own OpenAPI document, checked by Schemathesis (a tool nobody here wrote):
every check (``--checks all``: no 5xx, statuses / content types / headers / bodies as documented,
schema-valid requests accepted and invalid ones rejected, 405 with ``Allow``, auth not ignored...)
with zero failures.

The service runs on the session's API port (``RDG_API_PORT`` of the test session) over the real
Cassandra, and Schemathesis's CLI (the pinned version in the venv) calls it with the session's admin
token, so the admin routes (erasure) are exercised too, on a private keyspace and a private Iceberg
catalog.

Two request rules cannot be written in JSON Schema, and the API answers them with a 400 naming the
problem: a page token must be one this service signed for that list (HMAC), and each traverse hop
must start from the node type the previous hop reached. For exactly those two operations the
"schema-valid data is accepted" check also allows 400; everything the schema can say (types as
enums, ranges, patterns) stays a failure if the service disagrees with it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from rdg_platform.erasure import ErasureEngine
from rdg_platform.kv import GraphStore, ensure_schema
from rdg_platform.model import GraphRecord
from rdg_platform.serving.app import create_app
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace

pytestmark = pytest.mark.integration
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = """
[[operations]]
include-path = "/v1/traverse"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]

[[operations]]
include-path = "/v1/edges/{edge_type}/{id}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]
"""


@pytest.fixture(scope="module")
def live(services: object, cfg: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("contract")
    settings = cfg.model_copy(update={"iceberg": cfg.iceberg.model_copy(update={
        "catalog_uri": f"sqlite:///{tmp}/catalog.db", "warehouse": f"file://{tmp}/warehouse"})})
    spec = isolated_spec(unique_keyspace("rdg_test_contract"), cfg)
    store = GraphStore.from_spec(spec, cfg.cassandra)
    ensure_schema(store.kv, spec)
    ErasureEngine.from_settings(store, settings).ensure_schema()
    store.write([GraphRecord("node", "account", "a", None, {"plan": "p", "country": "US"}, 1),
                 GraphRecord("edge", "has_profile", "a", "p", {"last_seen_ts": 1}, 1),
                 GraphRecord("edge", "logged_in_from", "a", "d", {"device_type": "tv"}, 2)])
    server = uvicorn.Server(uvicorn.Config(create_app(spec, store=store, settings=settings), host="127.0.0.1",
                                           port=cfg.api.port, log_level="warning", access_log=False))
    th = threading.Thread(target=server.run, name="uvicorn-contract", daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert th.is_alive(), f"the API could not start on the session's port {cfg.api.port} (in use?)"
        assert time.monotonic() < deadline, "the API did not start within 20 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{cfg.api.port}"
    finally:
        server.should_exit = True
        th.join(20)
        store.kv.drop_keyspaces()
        store.close()


def run_schemathesis(base: str, cfg: Settings, tmp_path: Path, *select: str) -> tuple[int, str]:
    """Schemathesis's CLI, all checks and phases, bounded examples, a fixed seed; (exit code, output)."""
    assert cfg.api.token is not None
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [str(SCHEMATHESIS), "--config-file", str(config), "--no-color", "run", f"{base}/openapi.json",
           "--checks", "all", "-H", f"Authorization: Bearer {cfg.api.token.get_secret_value()}",
           "--max-examples", "40", "--workers", "1", "--phases", "examples,coverage,fuzzing,stateful",
           "--seed", "20261130", *select]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)  # its caches stay there
    out = r.stdout + r.stderr
    assert cfg.api.token.get_secret_value() not in out  # the report filters the token
    return r.returncode, out


def test_read_api_schemathesis_all_checks_zero_failures(live: str, cfg: Settings, tmp_path: Path) -> None:
    """Nodes, edges, counts, traversals, /metrics, /healthz."""
    code, out = run_schemathesis(live, cfg, tmp_path, "--exclude-path-regex", "^/v1/erasures")
    assert code == 0, out[-8000:]


def test_erasure_api_schemathesis_all_checks_zero_failures(live: str, cfg: Settings, tmp_path: Path) -> None:
    """POST /v1/erasures and GET /v1/erasures/{id} (admin scope)."""
    code, out = run_schemathesis(live, cfg, tmp_path, "--include-path-regex", "^/v1/erasures")
    assert code == 0, out[-8000:]
