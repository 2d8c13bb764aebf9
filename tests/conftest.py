"""Session fixtures: the real local services, started once per test session.

The session runs on non-default ports and a non-default state directory (``tests/support/settings.py``),
so everything the tests start (apps, API, generator, Dagster resources, Spark) proves it follows the
settings it is given rather than a default wired in somewhere.

Integration tests depend on ``services``; if Kafka, Cassandra or the registry cannot be started the
fixture raises, so those tests ERROR (fail) instead of skipping.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rdg_platform.local_services.manager import ServiceManager
from rdg_platform.local_services.testing import ensure_services
from rdg_platform.model import GraphSpec
from rdg_platform.settings import Settings
from tests.support.session import session_settings


@pytest.fixture(scope="session")
def cfg() -> Settings:
    return session_settings()


@pytest.fixture(scope="session")
def spec(cfg: Settings) -> GraphSpec:
    return cfg.load_spec()


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest() -> None:
    """The dbt manifest is a build artefact (``dagster dev`` parses the project itself; images run
    ``dbt parse``); tests that load the Dagster definitions need it, whichever runs first."""
    from rdg_platform.assets.dbt import dbt_project, prepare
    from rdg_platform.settings import load_settings

    prepare(dbt_project(load_settings({})))


@pytest.fixture(scope="session")
def services(cfg: Settings) -> Iterator[ServiceManager]:
    """Start (or reuse) Kafka, Cassandra and the registry; they stay up for the next run.

    ``.ci/run`` stops them at the end of CI (it runs ``rdg services down`` with the session's
    settings); locally ``rdg services down`` with the same RDG_* values does.
    """
    yield ensure_services(cfg)
