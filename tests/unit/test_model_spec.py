"""Spec validation: a bad model must fail at load time with a message naming the problem."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from rdg_platform.model.spec import SpecDefaults, SpecError, default_spec_path, load_spec, parse_spec
from rdg_platform.settings import load_settings


@pytest.fixture()
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(default_spec_path().read_text())
    return copy.deepcopy(loaded)


def test_default_spec_has_the_contract_types() -> None:
    spec = load_spec()
    assert set(spec.nodes) == {"account", "profile", "device", "title", "game"}
    assert set(spec.edges) >= {"has_profile", "logged_in_from", "streamed_from", "started_watching", "plays", "based_on"}
    assert spec.edges["started_watching"].src == "profile" and spec.edges["started_watching"].dst == "title"
    assert set(spec.sources) == {"member.login", "member.playback", "member.gaming", "catalog.titles", "catalog.games"}
    assert {s.topic for s in spec.side_inputs()} == {"catalog.titles", "catalog.games"}
    assert "graph.edge.plays" in spec.graph_topics()


def test_namespaces_default_to_one_table_per_type(doc: dict[str, Any]) -> None:
    spec = parse_spec(doc, SpecDefaults(keyspace="ks1"))
    ns = spec.namespace("edge", "plays")
    assert (ns.keyspace, ns.table, ns.reverse_table) == ("ks1", "edge_plays", "edge_plays_in")
    assert ns.ttl_s == 8640000 and ns.compaction == "TimeWindowCompactionStrategy"
    assert spec.namespace("edge", "based_on").ttl_s == 0
    assert spec.namespace("node", "account").compaction == "SizeTieredCompactionStrategy"


def test_namespace_can_move_to_another_keyspace_and_cluster(doc: dict[str, Any]) -> None:
    doc["clusters"]["graph2"] = {"contact_points": ["10.0.0.5"], "port": 9142}
    doc["namespaces"] = {"edge.plays": {"cluster": "graph2", "keyspace": "gaming", "ttl_s": 60}}
    spec = parse_spec(doc)
    ns = spec.namespace("edge", "plays")
    assert (ns.cluster, ns.keyspace, ns.ttl_s) == ("graph2", "gaming", 60)
    assert spec.clusters["graph2"].contact_points == ("10.0.0.5",) and spec.clusters["graph2"].port == 9142


def test_default_cluster_uses_local_settings(doc: dict[str, Any]) -> None:
    cfg = load_settings({"RDG_CASSANDRA_CONTACT_POINTS": "127.0.0.2", "RDG_CASSANDRA_PORT": "19042"})
    spec = parse_spec(doc, cfg.spec_defaults())
    assert spec.clusters["default"].contact_points == ("127.0.0.2",)
    assert spec.clusters["default"].port == 19042


def test_edge_naming_unknown_node_type(doc: dict[str, Any]) -> None:
    doc["edges"]["plays"]["dst"] = "gamez"
    with pytest.raises(SpecError, match=r"edge 'plays': dst node type 'gamez' is not defined"):
        parse_spec(doc)


def test_mapping_reading_a_field_the_schema_lacks(doc: dict[str, Any]) -> None:
    doc["mappings"]["member.login"]["records"][0]["properties"]["country"] = "countryy"
    with pytest.raises(SpecError, match=r"field 'countryy' is not in schema member_login.avsc"):
        parse_spec(doc)


def test_mapping_reading_an_enrichment_field_the_side_input_lacks(doc: dict[str, Any]) -> None:
    doc["mappings"]["member.playback"]["records"][3]["properties"]["name"] = "title.nom"
    with pytest.raises(SpecError, match=r"field 'nom' is not in schema catalog_title.avsc"):
        parse_spec(doc)


def test_duplicate_namespace(doc: dict[str, Any]) -> None:
    doc["namespaces"] = {"node.account": {"table": "shared"}, "node.device": {"table": "shared"}}
    with pytest.raises(SpecError, match=r"duplicate namespace: 'node.device' and 'node.account' both use table rdg.shared"):
        parse_spec(doc, SpecDefaults(keyspace="rdg"))


def test_reverse_table_collision_is_a_duplicate(doc: dict[str, Any]) -> None:
    doc["namespaces"] = {"node.account": {"table": "edge_plays_in"}}
    with pytest.raises(SpecError, match=r"duplicate namespace"):
        parse_spec(doc)


def test_undeclared_property(doc: dict[str, Any]) -> None:
    doc["mappings"]["member.login"]["records"][0]["properties"]["colour"] = "country"
    with pytest.raises(SpecError, match=r"property 'colour' is not declared on the type"):
        parse_spec(doc)


def test_unknown_property_type(doc: dict[str, Any]) -> None:
    doc["nodes"]["account"]["properties"]["plan"] = "varchar"
    with pytest.raises(SpecError, match=r"property 'plan' has unknown type 'varchar'"):
        parse_spec(doc)


def test_mapping_for_unknown_edge_type(doc: dict[str, Any]) -> None:
    doc["mappings"]["member.gaming"]["records"][5]["edge"] = "played"
    with pytest.raises(SpecError, match=r"edge type 'played' is not defined"):
        parse_spec(doc)


def test_enrichment_must_be_a_side_input(doc: dict[str, Any]) -> None:
    doc["mappings"]["member.playback"]["enrich"]["title"]["topic"] = "member.login"
    with pytest.raises(SpecError, match=r"'member.login' is not a side_input source"):
        parse_spec(doc)


def test_namespace_override_for_unknown_type(doc: dict[str, Any]) -> None:
    doc["namespaces"] = {"edge.nope": {"ttl_s": 1}}
    with pytest.raises(SpecError, match=r"'edge.nope' names no node or edge type"):
        parse_spec(doc)


def test_bad_table_identifier_is_rejected(doc: dict[str, Any]) -> None:
    doc["namespaces"] = {"node.account": {"table": "acc; DROP TABLE x"}}
    with pytest.raises(SpecError, match=r"is not a valid CQL identifier"):
        parse_spec(doc)


def test_invalid_yaml_file(tmp_path: Any) -> None:
    p = tmp_path / "spec.yaml"
    p.write_text("nodes: [unclosed\n")
    with pytest.raises(SpecError, match=r"not valid YAML"):
        load_spec(p)


def test_compaction_must_come_from_the_allow_list() -> None:
    import yaml

    from rdg_platform.model.spec import SpecError, default_spec_path, parse_spec

    doc = yaml.safe_load(default_spec_path().read_text())
    doc.setdefault("namespaces", {})["node.account"] = {"compaction": "Leveled'} AND gc_grace_seconds = 0 --"}
    with pytest.raises(SpecError, match="compaction .* is not one of"):
        parse_spec(doc)
    doc["namespaces"]["node.account"] = {"compaction": "LeveledCompactionStrategy"}
    assert parse_spec(doc).namespaces["node.account"].compaction == "LeveledCompactionStrategy"
