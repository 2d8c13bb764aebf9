"""Erasure pieces that need no running service: subject checks, audit counts, the policy against the
default model, the settings name, and the Iceberg part on a real local SQLite catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rdg_platform.erasure.archive import archive_tables, count_rows, delete_rows, expire_holding_snapshots
from rdg_platform.erasure.audit import ErasureStatus, WorkItem
from rdg_platform.erasure.engine import DEFAULT_POLICY, check_subject, graph_counts
from rdg_platform.lakehouse.archive import archive_records
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.lakehouse.kafka_window import WindowRecord
from rdg_platform.model.spec import load_spec
from rdg_platform.settings import load_settings

H = 1_700_000_000_000 // 3_600_000 * 3_600_000


def test_check_subject_names_the_problem() -> None:
    check_subject("account", "a-1")
    with pytest.raises(ValueError, match="type must be one of"):
        check_subject("title", "t")
    for bad in ("", "x" * 257, "a\nb"):
        with pytest.raises(ValueError, match="1-256 printable"):
            check_subject("account", bad)


def test_policy_matches_the_default_model() -> None:
    spec = load_spec(None)
    p = DEFAULT_POLICY
    assert p.root in spec.nodes
    for e in (*p.owned, *p.shared):
        assert spec.edges[e].src == p.root
    assert {spec.edges[e].dst for e in p.owned} == {"profile"}
    assert {spec.edges[e].dst for e in p.shared} == {"device"}
    assert p.archive_column in spec.sources["member.login"].field_names


def test_graph_counts_from_the_plan() -> None:
    work = [WorkItem("account", "a", True, {"has_profile:out": 2, "logged_in_from:out": 3, "node": 1}),
            WorkItem("profile", "p1", True, {"has_profile:in": 0, "started_watching:out": 4, "node": 1}),
            WorkItem("device", "d1", False, {"logged_in_from:in": 0, "node": 1})]
    assert graph_counts(work) == {"nodes.account": 1, "nodes.profile": 1, "edges.has_profile": 2,
                                  "edges.logged_in_from": 3, "edges.started_watching": 4}


def test_status_json_has_no_subject() -> None:
    st = ErasureStatus("e" * 32, "account", "done", "done", 5, 4, 6, counts={"nodes.account": 1})
    body = st.to_json()
    assert body["status"] == "done" and body["counts"] == {"nodes.account": 1}
    assert "id" not in body and "subject" not in json.dumps(body)


def test_grace_setting_name() -> None:
    assert load_settings({"RDG_ERASURE_ARCHIVE_GRACE_S": "0"}).erasure.archive_grace_s == 0
    assert load_settings({}).erasure.archive_grace_s == 604_800


def test_archive_delete_then_expire_frees_every_file_holding_the_member(tmp_path: Path) -> None:
    cat = CatalogConfig.local(tmp_path).load()
    schema = load_spec(None).sources["member.login"].schema
    recs = []
    for i, acc in enumerate(["gone", "stay", "gone", "stay"]):
        recs.append(WindowRecord(0, i, H + i, acc.encode(), json.dumps({
            "event_id": f"e{i}", "event_time": H + i, "account_id": acc, "device_id": "d"}).encode()))
    archive_records(cat, "member.login", schema, lambda b: (1, json.loads(b)), [recs], H, H + 3_600_000)
    [(topic, table)] = list(archive_tables(cat, "account_id"))
    assert topic == "member.login" and count_rows(table, "account_id", "gone") == 2
    assert delete_rows(table, "account_id", "gone", "e1") == 2
    assert delete_rows(table, "account_id", "gone", "e1") == 0  # idempotent: nothing committed again
    assert count_rows(table, "account_id", "gone") == 0 and count_rows(table, "account_id", "stay") == 2
    assert any(count_rows(table, "account_id", "gone", s.snapshot_id) for s in table.snapshots())
    res = expire_holding_snapshots(table, "account_id", "gone", "e1")
    assert res.snapshots_expired >= 1 and res.files_deleted >= 1
    assert not any(count_rows(table, "account_id", "gone", s.snapshot_id) for s in table.snapshots())
    files = list((tmp_path / "warehouse").rglob("*.parquet"))
    held = [v for f in files for v in pq.read_table(f, columns=["account_id"]).column("account_id").to_pylist()]
    assert "gone" not in held and held.count("stay") == 2
    again = expire_holding_snapshots(table, "account_id", "gone", "e1")
    assert (again.snapshots_expired, again.files_deleted, again.rows_deleted_again) == (0, 0, 0)
