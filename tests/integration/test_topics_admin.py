"""Topic provisioning against the real broker, read back through the admin API."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from rdg_platform.kafka_client import client_config
from rdg_platform.model import GraphSpec, parse_spec
from rdg_platform.model.spec import default_spec_path
from rdg_platform.settings import Settings
from rdg_platform.topology import describe_topics, ensure_topics, topic_specs
from tests.support.poll import poll_until

pytestmark = pytest.mark.integration


def _wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    poll_until(cond, what=what, timeout_s=timeout_s)


def test_shared_topics_match_config(services: object, cfg: Settings, spec: GraphSpec) -> None:
    ensure_topics(AdminClient(client_config(cfg.kafka)), spec)
    wanted = topic_specs(spec)
    actual = describe_topics(AdminClient(client_config(cfg.kafka)), [t.name for t in wanted])
    for t in wanted:
        cur = actual[t.name]
        assert cur["partitions"] >= t.partitions, t.name
        assert cur["configs"]["retention.ms"] == t.configs["retention.ms"], t.name
        assert cur["configs"]["cleanup.policy"] == t.cleanup_policy, t.name
    assert actual["catalog.titles"]["configs"]["cleanup.policy"] == "compact"
    assert actual["catalog.games"]["configs"]["cleanup.policy"] == "compact"
    assert actual["member.playback"]["configs"]["retention.ms"] == str(24 * 3_600_000)
    assert actual["member.playback"]["partitions"] == 4
    assert actual["member.login.dlq"]["configs"]["retention.bytes"] == "1073741824"
    again = ensure_topics(AdminClient(client_config(cfg.kafka)), spec)
    assert not again.created and not again.altered and not again.partitions_added


@pytest.fixture()
def private_spec(cfg: Settings) -> Iterator[GraphSpec]:
    """The default model with its source topics renamed to unique names (so this test can change their
    configs without disturbing the shared topics); the topics are deleted afterwards."""
    doc = yaml.safe_load(Path(default_spec_path()).read_text())
    tag = uuid.uuid4().hex[:8]
    doc["sources"] = {f"rdgtest.{tag}.{name}": src for name, src in doc["sources"].items()}
    doc["mappings"] = {}
    spec = parse_spec(doc, cfg.spec_defaults())
    yield spec
    admin = AdminClient(client_config(cfg.kafka))
    names = [n for s in spec.sources for n in (s, f"{s}.dlq")]
    for fut in admin.delete_topics(names).values():
        fut.result()


def test_ensure_creates_then_realigns_drifted_configs(services: object, cfg: Settings, private_spec: GraphSpec) -> None:
    first = ensure_topics(AdminClient(client_config(cfg.kafka)), private_spec)
    login = next(t for t in private_spec.sources if t.endswith("member.login"))
    titles = next(t for t in private_spec.sources if t.endswith("catalog.titles"))
    assert login in first.created and titles in first.created and f"{login}.dlq" in first.created

    admin = AdminClient(client_config(cfg.kafka))
    drift = [ConfigResource(ResourceType.TOPIC, login, incremental_configs=[
        ConfigEntry("retention.ms", "1234", incremental_operation=AlterConfigOpType.SET)]),
        ConfigResource(ResourceType.TOPIC, titles, incremental_configs=[
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)])]
    for fut in admin.incremental_alter_configs(drift).values():
        fut.result()
    # KRaft applies an accepted alter asynchronously: if ensure_topics read the configs before the drift
    # showed, it would find nothing to fix and the drift would land afterwards (a CI flake).
    _wait_for(lambda: (d := describe_topics(admin, [login, titles]))[login]["configs"]["retention.ms"] == "1234"
              and d[titles]["configs"]["cleanup.policy"] == "delete", "the drift to become visible")

    second = ensure_topics(AdminClient(client_config(cfg.kafka)), private_spec,
                           overrides={"topics": {login: {"partitions": 6}}})
    assert not second.created
    assert second.altered.get(login, {}).get("retention.ms") == str(72 * 3_600_000)
    assert second.altered.get(titles, {}).get("cleanup.policy") == "compact"
    assert second.partitions_added[login] == (4, 6)
    now = describe_topics(admin, [login, titles])
    assert now[login]["configs"]["retention.ms"] == str(72 * 3_600_000)
    assert now[login]["partitions"] == 6
    assert now[titles]["configs"]["cleanup.policy"] == "compact"
    assert now[titles]["configs"]["retention.ms"] == "-1"
