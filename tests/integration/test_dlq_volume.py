"""The dlq_volume asset and its check against real DLQ topics: a dead letter produced with a reason
is counted under that reason, and the check fails once the waiting volume passes the threshold."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from dagster import AssetsDefinition, materialize

from rdg_platform.assets.dlq import defs
from rdg_platform.kafka_client import client_config
from rdg_platform.settings import Settings
from rdg_platform.topology import ensure_topics

pytestmark = pytest.mark.integration


def test_dlq_volume_counts_by_reason_and_check_fails_over_threshold(cfg: Settings, services: object) -> None:
    from confluent_kafka.admin import AdminClient

    spec = cfg.load_spec()
    ensure_topics(AdminClient(client_config(cfg.kafka)), spec)
    reason = f"test_reason_{uuid.uuid4().hex[:8]}"
    p = Producer(client_config(cfg.kafka))
    for i in range(3):
        p.produce("member.gaming.dlq", value=b"not avro", key=f"k{i}".encode(),
                  headers=[("rdg.dlq.reason", reason.encode()), ("rdg.dlq.detail", b"test"),
                           ("rdg.source.topic", b"member.gaming")])
    assert p.flush(15) == 0

    strict = cfg.model_copy(update={"dagster": cfg.dagster.model_copy(update={"dlq_alert_threshold": 2})})
    d = defs(strict)
    to_run = [a for a in [*(d.assets or []), *(d.asset_checks or [])] if isinstance(a, AssetsDefinition)]
    result = materialize(to_run, raise_on_error=True)
    mat = result.asset_materializations_for_node("dlq_volume")[0]
    volume = mat.metadata["volume"].value
    assert isinstance(volume, dict)
    assert volume["member.gaming.dlq"][reason] == {"dead_lettered": 3, "redriven": 0}
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"dlq_waiting_below_threshold": False}
