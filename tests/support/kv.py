"""Helpers for tests and benchmarks: an isolated copy of the model in its own keyspace(s).

Test runs share one Cassandra; each module gets a unique keyspace so runs never see each other's
data, and drops it at the end.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Mapping
from typing import Any

import yaml

from rdg_platform.model.spec import GraphSpec, default_spec_path, parse_spec
from rdg_platform.settings import Settings


def unique_keyspace(prefix: str) -> str:
    """``<prefix>_<pid>_<8 hex>`` (valid CQL identifier, <= 48 chars)."""
    return f"{prefix[:30]}_{os.getpid() % 10000}_{uuid.uuid4().hex[:8]}".lower()


def isolated_spec(keyspace: str, settings: Settings,
                  namespaces: Mapping[str, Mapping[str, Any]] | None = None) -> GraphSpec:
    """The packaged model on ``settings``' Cassandra with every namespace in ``keyspace`` (plus
    optional per-namespace overrides, e.g. ``{"edge.plays": {"keyspace": "other"}}``)."""
    doc = yaml.safe_load(default_spec_path().read_text())
    if namespaces:
        doc["namespaces"] = {k: dict(v) for k, v in namespaces.items()}
    return parse_spec(doc, dataclasses.replace(settings.spec_defaults(), keyspace=keyspace))
