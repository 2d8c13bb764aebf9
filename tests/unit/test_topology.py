"""Unit tests of topic layout from configuration (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rdg_platform.model import default_spec
from rdg_platform.topology import TopicConfigError, default_topics_file, topic_specs


def _by_name(overrides: object = None) -> dict[str, object]:
    return {t.name: t for t in topic_specs(default_spec(), overrides)}  # type: ignore[arg-type]


def test_every_topic_is_provisioned() -> None:
    spec = default_spec()
    names = set(_by_name())
    expected = set(spec.sources) | set(spec.graph_topics())
    expected |= {f"{t}.dlq" for t in expected}
    assert names == expected
    assert "graph.edge.started_watching.dlq" in names and "member.playback.dlq" in names


def test_catalogs_compacted_sources_time_retained() -> None:
    specs = topic_specs(default_spec())
    for t in specs:
        if t.role == "catalog":
            assert t.cleanup_policy == "compact" and t.configs["cleanup.policy"] == "compact"
            assert t.configs["retention.ms"] == "-1"
        else:
            assert t.cleanup_policy == "delete"
            assert t.retention_hours is not None and t.retention_hours > 0
            assert t.configs["retention.ms"] == str(t.retention_hours * 3_600_000)


def test_packaged_yaml_agrees_with_the_model_spec() -> None:
    """topology.yaml documents the sources' sizing; spec.yaml owns it. They must not drift apart."""
    doc = yaml.safe_load(default_topics_file().read_text())
    for name, src in default_spec().sources.items():
        entry = doc["topics"][name]
        assert entry["partitions"] == src.partitions, name
        assert entry["retention_hours"] == src.retention_hours, name


def test_every_topic_has_a_documented_entry_or_role_default() -> None:
    doc = yaml.safe_load(default_topics_file().read_text())
    spec = default_spec()
    for t in [*spec.sources, *spec.graph_topics()]:
        assert t in doc["topics"], f"{t} has no per-topic entry (with its retention reasoning) in topology.yaml"


def test_busiest_topic_keeps_least() -> None:
    by = _by_name()
    assert by["member.playback"].retention_hours < by["member.login"].retention_hours  # type: ignore[attr-defined]


def test_overrides_mapping_and_file(tmp_path: Path) -> None:
    over = {"defaults": {"replication_factor": 3, "dlq": {"retention_hours": 48}},
            "topics": {"member.playback": {"partitions": 12, "configs": {"max.message.bytes": "2097152"}}}}
    by = _by_name(over)
    pb = by["member.playback"]
    assert pb.partitions == 12 and pb.replication_factor == 3  # type: ignore[attr-defined]
    assert pb.configs["max.message.bytes"] == "2097152"  # type: ignore[attr-defined]
    assert by["member.login.dlq"].retention_hours == 48  # type: ignore[attr-defined]
    f = tmp_path / "t.yaml"
    f.write_text(yaml.safe_dump(over))
    assert _by_name(f)["member.playback"].partitions == 12  # type: ignore[attr-defined]


def test_topics_file_setting_overrides(tmp_path: Path) -> None:
    from rdg_platform.settings import load_settings
    from rdg_platform.topology import topic_specs

    f = tmp_path / "t.yaml"
    f.write_text("topics:\n  graph.node.title: {retention_hours: 1}\n")
    s = load_settings({"RDG_TOPICS_FILE": str(f)})
    by_name = {t.name: t for t in topic_specs(s.load_spec(), s.topics_file)}
    assert by_name["graph.node.title"].retention_hours == 1


@pytest.mark.parametrize("over, match", [
    ({"topics": {"no.such.topic": {"partitions": 1}}}, "no.such.topic"),
    ({"topics": {"member.login": {"partitions": 0}}}, "member.login"),
    ({"topics": {"member.login": {"cleanup_policy": "shred"}}}, "cleanup_policy"),
    ({"topics": {"member.login": {"retention": 5}}}, "unknown key 'retention'"),
    ({"bogus": {}}, "bogus"),
])
def test_invalid_overrides_name_the_problem(over: dict[str, object], match: str) -> None:
    with pytest.raises(TopicConfigError, match=match):
        topic_specs(default_spec(), over)
