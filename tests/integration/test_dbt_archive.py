"""`dbt build` (dbt-duckdb) over a real Iceberg archive written with the project's archive code.

The archive tables are created in a temporary SQL catalog by ``rdg_platform.lakehouse.archive``
(the same code the archive assets use), then the dbt project runs against it with DuckDB's
extension autoload/autoinstall off and a fresh extension directory, which must stay empty: nothing
is downloaded at run time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rdg_platform.assets.dbt import dbt_vars
from rdg_platform.lakehouse.archive import ensure_archive_table, replace_window
from rdg_platform.lakehouse.catalog import CatalogConfig
from rdg_platform.lakehouse.schema import rows_to_arrow
from rdg_platform.model.spec import load_avro_schema
from rdg_platform.resources import IcebergCatalogResource

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DBT_DIR = ROOT / "dbt"
HOUR = datetime(2024, 5, 1, 10, tzinfo=UTC)


def _row(topic: str, i: int, t: datetime, **fields: Any) -> dict[str, Any]:
    return {"kafka_topic": topic, "kafka_partition": 0, "kafka_offset": i, "kafka_ts": t, "kafka_key": fields["account_id"],
            "schema_id": 1, "event_time": t, **fields}


def write_archive(base: Path) -> CatalogConfig:
    """Two accounts: acc-1 watches on the phone then the TV (one cross-device journey) and plays a
    game; acc-2 watches the same title twice (one redelivered event)."""
    cfg = CatalogConfig.local(base)
    cat = cfg.load()
    t0 = HOUR + timedelta(minutes=5)
    data: dict[str, list[dict[str, Any]]] = {
        "member.login": [
            _row("member.login", 0, t0, event_id="l1", account_id="acc-1", profile_id="p1", device_id="phone-1",
                 device_type="PHONE", country="US", app_version="1", plan="premium"),
        ],
        "member.playback": [
            _row("member.playback", 0, t0 + timedelta(minutes=1), event_id="e1", account_id="acc-1", profile_id="p1",
                 device_id="phone-1", device_type="PHONE", title_id="t1", action="START", position_ms=0, is_live=False),
            _row("member.playback", 1, t0 + timedelta(minutes=10), event_id="e2", account_id="acc-1", profile_id="p1",
                 device_id="tv-1", device_type="TV", title_id="t1", action="HEARTBEAT", position_ms=5000,
                 is_live=False),
            _row("member.playback", 2, t0 + timedelta(minutes=2), event_id="e3", account_id="acc-2", profile_id="p2",
                 device_id="web-2", device_type="WEB", title_id="t1", action="START", position_ms=0, is_live=False),
            _row("member.playback", 3, t0 + timedelta(minutes=2), event_id="e3", account_id="acc-2", profile_id="p2",
                 device_id="web-2", device_type="WEB", title_id="t1", action="START", position_ms=0, is_live=False),
        ],
        "member.gaming": [
            _row("member.gaming", 0, t0 + timedelta(minutes=20), event_id="g1", account_id="acc-1", profile_id="p1",
                 device_id="tv-1", device_type="TV", game_id="g-1", action="LAUNCH", session_id="s1"),
        ],
    }
    schemas = {"member.login": "member_login.avsc", "member.playback": "member_playback.avsc",
               "member.gaming": "member_gaming.avsc"}
    start_ms = int(HOUR.timestamp() * 1000)
    for topic, rows in data.items():
        table, _ = ensure_archive_table(cat, topic, load_avro_schema(schemas[topic]))
        replace_window(table, rows_to_arrow(rows, table.schema()), start_ms, start_ms + 3_600_000)
    return cfg


def test_dbt_build_on_real_archive(tmp_path: Path) -> None:
    """``dbt build`` as the Dagster asset runs it: the catalog and DuckDB paths as ``--vars`` from
    :func:`rdg_platform.assets.dbt.dbt_vars`, nothing from the environment."""
    catalog = write_archive(tmp_path / "iceberg")
    iceberg = IcebergCatalogResource(catalog_name=catalog.name, uri=catalog.uri, warehouse=catalog.warehouse)
    duck = tmp_path / "duck"
    (duck / "duckdb_extensions").mkdir(parents=True)
    dbt = str(Path(sys.executable).parent / "dbt")
    proc = subprocess.run([dbt, "build", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
                           "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"),
                           "--vars", json.dumps(dbt_vars(iceberg, duck))],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "ERROR=0" in proc.stdout and "PASS=" in proc.stdout, proc.stdout[-2000:]
    # Nothing was installed/downloaded into DuckDB's extension directory.
    assert list((duck / "duckdb_extensions").rglob("*")) == []

    con = duckdb.connect(str(duck / "rdg_analytics.duckdb"), read_only=True)
    try:
        journeys = con.execute("select account_id, devices, is_cross_device, device_switches, verticals "
                               "from member_cross_device_journeys order by account_id").fetchall()
        assert journeys[0][0] == "acc-1" and journeys[0][1] == 2 and journeys[0][2] is True
        assert journeys[0][3] >= 1 and "gaming" in journeys[0][4] and "streaming" in journeys[0][4]
        assert journeys[1][0] == "acc-2" and journeys[1][2] is False
        dau = dict(((r[0], r[1]), r[2]) for r in con.execute(
            "select cast(activity_date as varchar), vertical, active_accounts from daily_active_accounts_by_vertical"
        ).fetchall())
        assert dau == {("2024-05-01", "streaming"): 2, ("2024-05-01", "gaming"): 1}
        ratio = con.execute("select records, distinct_events, duplicate_delivery_ratio, dedup_ratio "
                            "from dedup_ratio_hourly where topic = 'member.playback'").fetchone()
        assert ratio is not None
        assert ratio[0] == 4 and ratio[1] == 3
        assert ratio[2] == pytest.approx(0.25) and ratio[3] == pytest.approx(1 - 2 / 4)
    finally:
        con.close()
