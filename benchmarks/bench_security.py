"""What security costs the streaming apps: processor and sink throughput with SASL/SCRAM vs PLAINTEXT.

One private broker (own state dir, free ports) gets, besides its SCRAM listener, a PLAINTEXT listener on
loopback for this benchmark only (``KafkaService(benchmark_plaintext_port=...)``). The same pipeline
(all processors and sinks, a private keyspace) runs once per mode, alternating modes over ``--repeat``
rounds so drift in the machine's load hits both alike; each round produces ``--events`` playback events
and measures:

- processor: events/s through the playback processor (its ``rdg_records_in_total``, first to last);
- sink: rows/s written to Cassandra by all sinks (``rdg_cassandra_writes_total``, first to last).

Prints a markdown table with the median SCRAM / PLAINTEXT ratio of each (target >= 0.95).
Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_security.py --events 20000 --repeat 3``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from rdg_platform.avro import AvroSerde, SchemaRegistry
from rdg_platform.local_services import ServiceManager
from rdg_platform.local_services.base import free_ports
from rdg_platform.local_services.kafka import KafkaService
from rdg_platform.settings import Settings
from rdg_platform.streaming.supervisor import scrape_metrics
from tests.support.session import isolated_settings
from tests.support.streaming import local_pipeline, produce_events


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def playback_events(run: str, n: int, t0: int) -> list[tuple[str, str, dict[str, object]]]:
    """``n`` playback events over ``n // 10`` accounts, each a new title (so every event maps to rows)."""
    out: list[tuple[str, str, dict[str, object]]] = []
    for i in range(n):
        acct = f"sec-{run}-a{i % max(1, n // 10)}"
        out.append(("member.playback", acct, {
            "event_id": f"{run}-{i}", "event_time": t0 + i, "account_id": acct, "profile_id": f"{acct}-p0",
            "device_id": f"{acct}-d0", "device_type": "TV", "title_id": f"sec-{run}-t{i}", "episode_id": None,
            "action": "START", "position_ms": i, "is_live": False}))
    return out


def _sum(ports: list[int], name: str) -> float:
    return sum(scrape_metrics(p).get(name, 0.0) for p in ports)


def _rate(ports: list[int], name: str, target: float, timeout_s: float, settle_s: float = 5.0) -> float:
    """Per second between the metric's first move and its last, once it reached ``target`` (or stopped
    moving for ``settle_s``)."""
    base = _sum(ports, name)
    first = last = None
    last_v = 0.0
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        v = _sum(ports, name) - base
        now = time.perf_counter()
        if v > last_v:
            first = first or now
            last, last_v = now, v
        if v >= target or (last is not None and now - last > settle_s):
            break
        time.sleep(0.05)
    if first is None or last is None or last <= first:
        raise RuntimeError(f"{name} did not move within {timeout_s:.0f} s")
    return last_v / (last - first)


def one_round(base: Settings, mode: str, events: int) -> tuple[float, float]:
    with local_pipeline(base, window_s=1.0, name=f"sec{mode[:3].lower()}") as pipe:
        apps = {a.name: a for a in pipe.supervisor.status()}
        proc = [apps["member_playback-processor"].metrics_port or 0]
        sinks = [a.metrics_port or 0 for n, a in apps.items() if n.startswith("sink-")]
        evs = playback_events(uuid.uuid4().hex[:6], events, int(time.time() * 1000) - 600_000)
        serde = AvroSerde(SchemaRegistry.from_settings(pipe.settings.registry))
        result: dict[str, float] = {}
        th = threading.Thread(target=lambda: result.update(p=_rate(proc, "rdg_records_in_total", events, 600)))
        th.start()
        produce_events(pipe.settings.kafka, serde, evs)
        th.join()
        sink_rate = _rate(sinks, "rdg_cassandra_writes_total", float("inf"), 600, settle_s=8.0)
        return result["p"], sink_rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000, help="playback events per round")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per mode (alternating)")
    args = ap.parse_args()

    state = Path(tempfile.mkdtemp(prefix="rdg-bench-security-"))
    secure = isolated_settings(state / "state")
    plain_port = free_ports(1)[0]
    manager = ServiceManager(secure, echo=log)
    manager.services["kafka"] = KafkaService(secure, benchmark_plaintext_port=plain_port)
    log(f"starting a private Kafka (SCRAM + benchmark PLAINTEXT on {plain_port}), Cassandra, registry ...")
    manager.up()
    plain = secure.model_copy(update={"kafka": secure.kafka.model_copy(update={
        "bootstrap": f"127.0.0.1:{plain_port}", "security_protocol": "PLAINTEXT", "sasl_mechanism": None,
        "sasl_username": None, "sasl_password": None})})
    runs: dict[str, list[tuple[float, float]]] = {"SCRAM": [], "PLAINTEXT": []}
    try:
        for r in range(args.repeat):
            order = ["SCRAM", "PLAINTEXT"] if r % 2 == 0 else ["PLAINTEXT", "SCRAM"]
            for mode in order:
                log(f"round {r + 1}/{args.repeat}: {mode} ...")
                runs[mode].append(one_round(secure if mode == "SCRAM" else plain, mode, args.events))
                log(f"  processor {runs[mode][-1][0]:.0f} events/s, sinks {runs[mode][-1][1]:.0f} rows/s")
    finally:
        manager.down(purge=True)

    def med(mode: str, i: int) -> float:
        return statistics.median(x[i] for x in runs[mode])

    print("| measure | SCRAM / PLAINTEXT (median) | target | detail |")
    print("|---|---:|---|---|")
    for i, what in ((0, "processor events/s (playback)"), (1, "sink rows/s (all sinks)")):
        detail = ", ".join(f"{m}: " + "/".join(f"{x[i]:.0f}" for x in runs[m]) for m in runs)
        print(f"| {what} | {med('SCRAM', i) / med('PLAINTEXT', i):.3f} | ≥ 0.95 | {detail} ({args.events} events, "
              f"{args.repeat} rounds each) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
