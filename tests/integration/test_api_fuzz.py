"""Fuzz the query API from its own OpenAPI spec (schemathesis + hypothesis): no input may get a 5xx.

The app runs in-process (ASGI) against the real Cassandra, so storage errors, decoding of stored
values and validation are all exercised. Examples are bounded so the test stays well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from rdg_platform.kv import GraphStore, ensure_schema
from rdg_platform.model import GraphRecord
from rdg_platform.serving.app import create_app
from rdg_platform.settings import Settings
from tests.support.kv import isolated_spec, unique_keyspace

pytestmark = pytest.mark.integration
EXAMPLES = 100  # per operation and generation mode


@pytest.fixture(scope="module")
def app(services: object, cfg: Settings) -> Iterator[FastAPI]:
    spec = isolated_spec(unique_keyspace("rdg_test_fuzz"), cfg)
    store = GraphStore.from_spec(spec, cfg.cassandra)
    ensure_schema(store.kv, spec)
    store.write([GraphRecord("node", "account", "a", None, {"plan": "p", "country": "US"}, 1),
                 GraphRecord("edge", "has_profile", "a", "p", {"last_seen_ts": 1}, 1),
                 GraphRecord("edge", "logged_in_from", "a", "d", {"device_type": "tv"}, 2)])
    yield create_app(spec, store=store)
    store.kv.drop_keyspaces()
    store.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_gets_a_5xx(app: FastAPI, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {op.path for op in ops} >= {"/v1/nodes/{type}/{id}", "/v1/edges/{edge_type}/{id}", "/v1/traverse"}
    for op in ops:
        if mode == GenerationMode.NEGATIVE and not op.path.startswith("/v1/"):
            continue  # nothing to make invalid on parameterless GETs (/healthz, /metrics)

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        run()
