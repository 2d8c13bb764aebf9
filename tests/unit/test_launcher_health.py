"""The health pass: dead apps are restarted, stopped ones are not, and lag reads are bounded in time
(a Kafka call that hangs cannot hold the sensor tick)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rdg_platform.assets.streaming_control.health import health_pass, read_lags
from rdg_platform.launcher.base import AppStatus
from rdg_platform.launcher.lag import LagReport, consumer_lag
from rdg_platform.settings import KafkaSettings
from rdg_platform.streaming.apps import AppSpec

APPS = [AppSpec("a", "processor", ("t.a",), "g-a", partitions=2), AppSpec("b", "processor", ("t.b",), "g-b"),
        AppSpec("c", "sink", ("t.c",), "g-c")]
UNREACHABLE = KafkaSettings(bootstrap="127.0.0.1:1", security_protocol="PLAINTEXT")


class InMemoryLauncher:
    """A launcher over a dict of states; stands in for process/cluster state in a pure unit test."""

    kind = "memory"

    def __init__(self) -> None:
        self.state = {"a": (True, True), "b": (False, True), "c": (False, False)}  # (running, expected)
        self.restarted: list[str] = []

    def apps(self) -> list[AppSpec]:
        return list(APPS)

    def status(self) -> list[AppStatus]:
        return [AppStatus(n, running=r, replicas=int(r), expected=e) for n, (r, e) in self.state.items()]

    def restart(self, name: str) -> AppStatus:
        self.restarted.append(name)
        self.state[name] = (True, True)
        return AppStatus(name, running=True, replicas=1, expected=True)

    def deploy(self, names: Sequence[str] | None = None) -> list[AppStatus]:
        raise NotImplementedError

    def stop(self, names: Sequence[str] | None = None) -> list[AppStatus]:
        raise NotImplementedError

    def scale(self, name: str, replicas: int) -> AppStatus:
        raise NotImplementedError


def _lag(kafka: KafkaSettings, group: str, topics: Sequence[str], timeout: float) -> LagReport:
    return LagReport(group, total={"g-a": 10, "g-b": 0, "g-c": 999_999}[group])


def test_dead_app_restarted_stopped_app_left_alone() -> None:
    launcher = InMemoryLauncher()
    p = health_pass(launcher, UNREACHABLE, 1.0, restart_dead=True, reader=_lag)
    assert launcher.restarted == ["b"]
    by = {h.app.name: h for h in p.apps}
    assert by["b"].restarted and by["b"].status.running
    assert not by["c"].restarted and not by["c"].status.running
    assert [h.app.name for h in p.lagging(50_000)] == ["c"]


def test_restart_can_be_disabled() -> None:
    launcher = InMemoryLauncher()
    health_pass(launcher, UNREACHABLE, 1.0, restart_dead=False, reader=_lag)
    assert launcher.restarted == []


def test_hanging_lag_reads_are_abandoned_within_the_deadline() -> None:
    def hang(kafka: KafkaSettings, group: str, topics: Sequence[str], timeout: float) -> LagReport:
        time.sleep(30)
        return LagReport(group, total=0)

    t = time.monotonic()
    lags = read_lags(UNREACHABLE, APPS, 0.5, reader=hang)
    assert time.monotonic() - t < 3.0
    assert all(r.total is None and r.error for r in lags.values())


def test_unreachable_kafka_reports_an_error_quickly() -> None:
    """A real client against a closed port: an error report within the bound, never an exception."""
    t = time.monotonic()
    rep = consumer_lag(UNREACHABLE, "rdg-test-none", ["member.login"], timeout_s=1.0)
    assert rep.total is None and rep.error
    assert time.monotonic() - t < 10.0
