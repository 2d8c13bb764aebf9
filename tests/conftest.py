"""Session fixtures: the real local services, started once per test session.

Integration tests depend on ``services``; if Kafka, Cassandra or the registry cannot be started the
fixture raises, so those tests ERROR (fail) instead of skipping.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rdg_platform.config import Settings, settings
from rdg_platform.model import GraphSpec, load_spec
from rdg_platform.local_services.manager import ServiceManager
from rdg_platform.local_services.testing import ensure_services


@pytest.fixture(scope="session")
def cfg() -> Settings:
    return settings()


@pytest.fixture(scope="session")
def spec(cfg: Settings) -> GraphSpec:
    return load_spec(cfg=cfg)


@pytest.fixture(scope="session")
def services(cfg: Settings) -> Iterator[ServiceManager]:
    """Start (or reuse) Kafka, Cassandra and the registry; they stay up for the next run.

    ``.ci/run`` stops them at the end of CI; locally ``rdg services down`` does.
    """
    yield ensure_services(cfg)
