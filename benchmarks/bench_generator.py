"""Generator throughput vs raw confluent-kafka produce of pre-serialised bytes (same run, same topics).

Both paths write the SAME records (the generator's stream for --members/--duration/--seed) with the
SAME producer settings (rdg_platform.generator.producer.producer_config: linger 20 ms, lz4,
idempotence, acks=all) to sandbox topics ``bench.<source topic>`` that the benchmark creates (and
deletes unless --keep-topics), so the shared source topics are not polluted:

- raw: the records are generated and encoded up front; the timed loop only calls
  ``Producer.produce(topic, value, key, timestamp=...)`` and ``flush()``.
- generator: the timed section is ``produce_generated(cfg, ...)``: journey generation, Avro encoding
  through the registry serde, produce and flush, exactly what ``rdg generate`` (``run_generator``) runs.

Before timing, the generator's records are checked to be byte-identical (topic, key, value, timestamp,
order) to the raw path's, which are built the reference way: ``generate_events`` + ``EventEncoder``.

Target: generator / raw >= 0.5. Also reported (no Kafka): the Event stream alone (``generate_events``,
what tests and the demo iterate), the reference Events + encoding, and the generator's own
generation + encoding (``encoded_batches``: ``rdg generate`` minus Kafka).
Each path runs --repeat times (alternating), the best run counts. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable

from confluent_kafka.admin import AdminClient, NewTopic

from rdg_platform.avro import AvroSerde
from rdg_platform.generator import (
    MEMBER_TOPICS,
    EventEncoder,
    GeneratorConfig,
    generate_events,
    make_producer,
    produce_generated,
)
from rdg_platform.generator.journeys import CATALOG_TOPICS
from rdg_platform.generator.render import encoded_batches
from rdg_platform.kafka_client import client_config
from rdg_platform.settings import load_settings

TOPICS = (*MEMBER_TOPICS, *CATALOG_TOPICS)


def _sandbox(admin: AdminClient, names: list[str], partitions: int) -> None:
    md = admin.list_topics(timeout=10)
    new = [NewTopic(n, partitions, 1, config={"retention.ms": "3600000"}) for n in names if n not in md.topics]
    for fut in (admin.create_topics(new).values() if new else []):
        fut.result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait for metadata of the new topics
        md = admin.list_topics(timeout=10)
        if all(n in md.topics and md.topics[n].partitions for n in names):
            return
        time.sleep(0.2)


def _best(fn: Callable[[], tuple[int, float]], repeat: int) -> tuple[int, float]:
    runs = [fn() for _ in range(repeat)]
    return max(runs, key=lambda r: r[0] / r[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=1000, help="member accounts (default 1000)")
    ap.add_argument("--duration", type=float, default=600.0, help="simulated seconds (default 600)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2, help="runs per path, best counts (default 2)")
    ap.add_argument("--partitions", type=int, default=4, help="partitions of the sandbox topics")
    ap.add_argument("--keep-topics", action="store_true", help="do not delete the bench.* topics afterwards")
    args = ap.parse_args()

    s = load_settings()  # Kafka and the registry: RDG_KAFKA_*, RDG_REGISTRY_* (see `rdg config show`)
    tmap = {t: f"bench.{t}" for t in TOPICS}
    admin = AdminClient(client_config(s.kafka))
    _sandbox(admin, list(tmap.values()), args.partitions)

    serde = AvroSerde.from_settings(s.registry)
    serde.register_all(s.load_spec())
    cfg = GeneratorConfig(members=args.members, duration_s=args.duration, seed=args.seed,
                          start_ms=int(time.time()) * 1000, id_prefix="bench-")

    # No Kafka: the Event stream alone, the reference Events + encoding, the generator's own encoding.
    t = time.perf_counter()
    n_gen = sum(1 for _ in generate_events(cfg))
    gen_only = (n_gen, time.perf_counter() - t)
    enc = EventEncoder(serde)
    t = time.perf_counter()
    records = [(tmap[e.topic], e.key.encode(), enc.value(e), e.timestamp_ms) for e in generate_events(cfg)]
    ref_enc = (len(records), time.perf_counter() - t)
    t = time.perf_counter()
    batches = list(encoded_batches(cfg, serde, Counter(), Counter(), tmap))
    gen_enc = (sum(len(b) for b in batches), time.perf_counter() - t)
    mine = [(topic, key, value, ts) for b in batches for topic, value, key, ts, _h, _s in b]
    if mine != records:
        raise SystemExit("the generator's records differ from generate_events + EventEncoder")
    del mine, batches

    def raw_produce(positional: bool) -> tuple[int, float]:
        producer, tracker = make_producer(s.kafka)
        producer.list_topics(timeout=10)  # connect before timing, as the generator's run does below
        produce = producer.produce
        t0 = time.perf_counter()
        for i, (topic, key, value, ts) in enumerate(records):
            while True:
                try:
                    if positional:
                        produce(topic, value, key, -1, None, None, ts)
                    else:
                        produce(topic, value, key, timestamp=ts)
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 1000 == 0:
                producer.poll(0)
        left = producer.flush(120)
        dt = time.perf_counter() - t0
        if left or tracker.failed:
            raise SystemExit(f"raw produce failed: {left} left, {tracker.errors}")
        return len(records), dt

    def raw() -> tuple[int, float]:
        return raw_produce(positional=False)

    def raw_positional() -> tuple[int, float]:
        """For reference only (not the target's baseline): raw produce with the positional call the
        generator's produce loop uses, to show how much of the ratio that call form accounts for."""
        return raw_produce(positional=True)

    def generator(worker: bool | None = None) -> tuple[int, float]:
        producer, tracker = make_producer(s.kafka)
        producer.list_topics(timeout=10)
        t0 = time.perf_counter()
        summary = produce_generated(cfg, producer, tracker, serde, topic_map=tmap, worker=worker)
        return summary.total, time.perf_counter() - t0

    results: dict[str, list[tuple[int, float]]] = {"raw": [], "generator": [], "raw_positional": [],
                                                   "gen_inline": [], "gen_worker": []}
    for _ in range(args.repeat):  # alternate so background load hits all alike
        results["raw"].append(raw())
        results["generator"].append(generator())
        results["raw_positional"].append(raw_positional())
        results["gen_inline"].append(generator(worker=False))
        results["gen_worker"].append(generator(worker=True))
    best = {k: max(v, key=lambda r: r[0] / r[1]) for k, v in results.items()}
    raw_rate = best["raw"][0] / best["raw"][1]

    print(f"\n### Generator vs raw produce ({args.members} members, {args.duration:.0f} s simulated, "
          f"seed {args.seed}, {len(records)} records, best of {args.repeat})\n")
    print("| path | records | seconds | records/s | ratio to raw |")
    print("|---|---:|---:|---:|---:|")
    rows = [("raw produce of pre-serialised bytes", best["raw"]), ("generator (generate + encode + produce)", best["generator"]),
            ("(reference) raw produce, positional call as in the generator's loop", best["raw_positional"]),
            ("generator, generating in the producing process (worker=False)", best["gen_inline"]),
            ("generator, generating in a forked worker process (worker=True)", best["gen_worker"]),
            ("Event stream only: generate_events (no Kafka)", gen_only),
            ("reference: generate_events + EventEncoder (no Kafka)", ref_enc),
            ("generator's generate + encode: encoded_batches (no Kafka)", gen_enc)]
    for name, (n, dt) in rows:
        print(f"| {name} | {n} | {dt:.2f} | {n / dt:,.0f} | {n / dt / raw_rate:.2f} |")
    ratio = best["generator"][0] / best["generator"][1] / raw_rate
    print(f"\nratio generator/raw = {ratio:.2f} (target >= 0.5: {'PASS' if ratio >= 0.5 else 'FAIL'})")
    serde.close()
    if not args.keep_topics:
        for fut in admin.delete_topics(list(tmap.values())).values():
            fut.result()


if __name__ == "__main__":
    main()
