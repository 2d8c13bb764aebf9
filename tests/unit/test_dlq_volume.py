"""The DLQ volume check's rule: reasons whose waiting (not re-driven) records exceed the threshold."""

from __future__ import annotations

from rdg_platform.assets.dlq import volume_table, waiting_over


def test_waiting_counts_only_records_not_redriven() -> None:
    volume = {"member.login.dlq": {"event_time_in_future": (12, 10), "decode_error": (3, 0)},
              "graph.edge.plays.dlq": {"bad_record": (1, 1)}}
    assert waiting_over(volume, 2) == {"member.login.dlq: decode_error": 3}
    assert waiting_over(volume, 3) == {}
    assert waiting_over(volume, 0) == {"member.login.dlq: event_time_in_future": 2, "member.login.dlq: decode_error": 3}


def test_volume_table_lists_each_reason() -> None:
    table = volume_table({"member.login.dlq": {"decode_error": (3, 1)}})
    assert "| member.login.dlq | decode_error | 3 | 1 | 2 |" in table
