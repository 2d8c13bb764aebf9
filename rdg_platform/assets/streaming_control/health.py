"""One health pass over the streaming apps: status, lag (bounded), restarts, alert decisions.

Pure Python around a launcher so the sensor stays a thin adapter and the logic is testable. Lag reads
run in a small thread pool with one overall deadline: with Kafka down, a pass still finishes in
about ``lag_timeout_s`` seconds, reporting the lag as unknown instead of hanging the sensor tick.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rdg_platform.launcher.base import AppLauncher, AppStatus
from rdg_platform.launcher.lag import LagReport, consumer_lag
from rdg_platform.settings import KafkaSettings
from rdg_platform.streaming.apps import AppSpec

LagReader = Callable[[KafkaSettings, str, Sequence[str], float], LagReport]


@dataclass
class AppHealth:
    app: AppSpec
    status: AppStatus
    lag: LagReport
    restarted: bool = False
    restart_error: str | None = None

    def lag_exceeds(self, threshold: int) -> bool:
        return self.lag.total is not None and self.lag.total > threshold


@dataclass
class HealthPass:
    apps: list[AppHealth] = field(default_factory=list)
    elapsed_s: float = 0.0
    status_error: str | None = None

    def lagging(self, threshold: int) -> list[AppHealth]:
        return [h for h in self.apps if h.lag_exceeds(threshold)]


def read_lags(kafka: KafkaSettings, apps: Sequence[AppSpec], timeout_s: float,
              reader: LagReader = consumer_lag) -> dict[str, LagReport]:
    """Lag of every app, concurrently, all done (or given up) within ~``timeout_s`` + 1 s."""
    out: dict[str, LagReport] = {}
    pool = cf.ThreadPoolExecutor(max_workers=min(8, max(1, len(apps))), thread_name_prefix="rdg-lag")
    try:
        futs = {pool.submit(reader, kafka, a.consumer_group, a.input_topics, timeout_s): a for a in apps}
        done, _ = cf.wait(futs, timeout=timeout_s + 1.0)
        for fut, app in futs.items():
            if fut in done and fut.exception() is None:
                out[app.name] = fut.result()
            else:
                err = fut.exception() if fut in done else None
                out[app.name] = LagReport(app.consumer_group, error=f"lag read did not finish: {err or 'timeout'}")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return out


def health_pass(launcher: AppLauncher, kafka: KafkaSettings, lag_timeout_s: float = 3.0, restart_dead: bool = True,
                reader: LagReader = consumer_lag) -> HealthPass:
    """Status + lag of every app; restart the dead ones (expected to run, not running)."""
    started = time.monotonic()
    apps = launcher.apps()
    res = HealthPass()
    try:
        statuses = {s.name: s for s in launcher.status()}
    except Exception as exc:  # a launcher that cannot answer is itself the health finding
        res.status_error = f"{type(exc).__name__}: {exc}"
        statuses = {}
    lags = read_lags(kafka, apps, lag_timeout_s, reader)
    for app in apps:
        st = statuses.get(app.name, AppStatus(app.name, running=False, detail=res.status_error or "unknown"))
        h = AppHealth(app, st, lags[app.name])
        if restart_dead and st.dead:
            try:
                h.status = launcher.restart(app.name)
                h.restarted = True
            except Exception as exc:
                h.restart_error = f"{type(exc).__name__}: {exc}"
        res.apps.append(h)
    res.elapsed_s = time.monotonic() - started
    return res
