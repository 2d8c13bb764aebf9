"""Benchmark: KV-layer bulk load vs the raw driver, and traversal latency through the HTTP API.

Measured in one run against the local Cassandra (RDG_CASSANDRA_PORT):

1. Bulk load ``--edges`` edges (forward + reverse rows) through ``GraphStore.write`` vs the raw
   driver's ``execute_concurrent_with_args`` with the same prepared statement and the same rows
   (written to an identical keyspace). Target: KV rate >= 0.7x raw.
2. 1-hop (``account -streamed_from-> device``) and 3-hop (``account -has_profile-> profile
   -started_watching-> title <-started_watching- profile``, fan-out <= 300 per hop) traversals
   through the HTTP API (uvicorn in a subprocess) at a fixed client concurrency, vs raw
   single-partition driver reads of the same adjacency lists. Targets: 1-hop p99 <= 2x raw p99 and
   <= 10 ms; 3-hop p99 <= 50 ms. With ``--supernode-edges``: 1-hop LATEST limit 100 of a node with
   that many in-edges vs one with 100 (target p99 <= 2x). The two sides of each ratio (raw vs 1-hop,
   supernode vs small node) are measured in ``--rounds`` interleaved rounds (A B, B A, ...), so a
   load spike on this shared machine lands on both sides instead of skewing the ratio.

3. ``--auth-compare``: only the API's authentication cost. Two servers on the same keyspace, one
   with bearer tokens on (the default), one without (``create_app(auth=False)``, never served
   otherwise), measured in interleaved rounds of 1-hop ``GET /v1/edges``; reports p50/p99 of each
   and the p99 ratio with / without auth. Target: <= 1.1.

Prints a markdown table and writes a JSON of the results to ``--out``. Settings (the Cassandra to use)
come from the environment like every entry point's (``RDG_CASSANDRA_*``). Run it from the project root
(it imports the test helpers of ``tests/support``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from cassandra.concurrent import execute_concurrent

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project root: tests.support

from fastapi import FastAPI  # noqa: E402

from rdg_platform.kv import GraphStore, ensure_schema  # noqa: E402
from rdg_platform.kv.store import KVStore  # noqa: E402
from rdg_platform.local_services.credentials import local_role_settings  # noqa: E402
from rdg_platform.model import GraphRecord  # noqa: E402
from rdg_platform.serving.app import create_app  # noqa: E402
from rdg_platform.settings import Settings, load_settings  # noqa: E402
from tests.support.kv import isolated_spec  # noqa: E402
from tests.support.serving import free_port  # noqa: E402

EDGE_READ = "SELECT item_key, updated_at, props, pb FROM {t} WHERE record_id = ? LIMIT ?"
TOKEN: str | None = None  # the bearer token requests carry (the reader role's), set by main()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(lat_s: Sequence[float], p: float) -> float:
    return float(np.percentile(np.asarray(lat_s) * 1000.0, p)) if lat_s else float("nan")


# ----------------------------------------------------------------------------- bulk load
def make_edges(n: int, per_account: int, now_ms: int) -> list[GraphRecord]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        acc = f"acc{i // per_account:07d}"
        ts = now_ms - rnd.randrange(30 * 86_400_000)
        out.append(GraphRecord("edge", "streamed_from", acc, f"dev{i:08d}",
                               {"last_watch_ts": ts, "device_type": "tv", "profile_id": f"{acc}-p1",
                                "title_id": f"t{rnd.randrange(5000)}"}, ts))
    return out


def bulk_load(store: GraphStore, raw_store: GraphStore, records: list[GraphRecord], concurrency: int,
              chunk: int) -> dict[str, Any]:
    """Raw driver first (its rows are precomputed, outside the timing), then the KV layer."""
    fwd = raw_store.edge_table("streamed_from")
    rev = raw_store.edge_table("streamed_from", "in")
    session = raw_store.kv.session(fwd)
    # The raw path writes exactly the statements the KV layer writes for these full records: the
    # forward and reverse row (blob layout) and, where the tables have one, the two latest-index
    # rows; all of an edge's statements in flight together, as GraphStore.write sends them.
    ps_f = raw_store.kv.prepare(fwd, KVStore.UPSERT_FULL)
    ps_r = raw_store.kv.prepare(rev, KVStore.UPSERT_FULL)
    fi, ri = raw_store.latest_index(fwd), raw_store.latest_index(rev)
    p = KVStore.full_params
    ttl = fwd.namespace.ttl_s
    stmts: list[tuple[Any, tuple[Any, ...]]] = []
    per_edge = 2 + (fi is not None) + (ri is not None)
    idx_f = raw_store.kv.prepare(fi, GraphStore._IDX_WRITE_FULL) if fi is not None else None
    idx_r = raw_store.kv.prepare(ri, GraphStore._IDX_WRITE_FULL) if ri is not None else None
    for r in records:
        fwd_params = p(r.id, r.dst or "", r.properties, None, r.updated_at, ttl)
        blob = fwd_params[2]
        stmts.append((ps_f, fwd_params))
        stmts.append((ps_r, (*fwd_params[:5], r.dst or "", r.id)))
        if idx_f is not None:
            stmts.append((idx_f, (r.id, r.updated_at, r.dst, blob, r.updated_at * 1000, ttl)))
        if idx_r is not None:
            stmts.append((idx_r, (r.dst, r.updated_at, r.id, blob, r.updated_at * 1000, ttl)))
    warm = min(20_000, len(records))
    execute_concurrent(session, stmts[:warm * per_edge], concurrency=concurrency)
    store.write(records[:warm])

    # Interleaved chunk by chunk (raw, then KV, same rows) so background load on a shared machine
    # hits both paths alike instead of whichever phase ran second.
    log(f"{len(records):,} edges ({per_edge * len(records):,} rows) per path, chunks of {chunk:,}, "
        f"concurrency {concurrency}")
    raw_s = kv_s = 0.0
    for i in range(0, len(records), chunk):
        t0 = time.perf_counter()
        res = execute_concurrent(session, stmts[i * per_edge:(i + chunk) * per_edge], concurrency=concurrency,
                                 raise_on_first_error=True, results_generator=False)
        assert all(ok for ok, _ in res)
        raw_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        store.write(records[i:i + chunk])
        kv_s += time.perf_counter() - t0
        done = min(i + chunk, len(records))
        log(f"  {done:,} edges: raw {done / raw_s:,.0f}/s, kv {done / kv_s:,.0f}/s")
    del stmts
    return {"edges": len(records), "rows": per_edge * len(records), "raw_s": raw_s, "kv_s": kv_s,
            "raw_edges_per_s": len(records) / raw_s, "kv_edges_per_s": len(records) / kv_s,
            "ratio": raw_s / kv_s}


SUPER, SMALL = "title-super", "title-small"


def build_supernodes(store: GraphStore, n: int, now_ms: int) -> None:
    """``SUPER`` with ``n`` in-edges (``started_watching`` from ``n`` profiles, distinct times over
    30 days, not in key order) and ``SMALL`` with 100."""
    rnd = random.Random(13)
    log(f"loading a supernode with {n:,} in-edges and a 100-edge node")

    def rec(prof: str, title: str) -> GraphRecord:
        ts = now_ms - rnd.randrange(30 * 86_400_000)
        return GraphRecord("edge", "started_watching", prof, title,
                           {"last_watch_ts": ts, "device_id": "d1", "position_ms": 1, "action": "play",
                            "episode_id": "e1", "is_live": False}, ts)

    recs = [rec(f"sn-prof{i:08d}", SMALL) for i in range(100)]
    for i in range(n):
        recs.append(rec(f"sn-prof{i:08d}", SUPER))
        if len(recs) >= 20_000:
            store.write(recs)
            recs = []
            log(f"  {i + 1:,} supernode edges")
    store.write(recs)


def build_journeys(store: GraphStore, accounts: int, profiles: int, titles_per_profile: int, title_pool: int,
                   now_ms: int) -> list[str]:
    rnd = random.Random(11)
    recs: list[GraphRecord] = []
    for a in range(accounts):
        acc = f"j-acc{a:05d}"
        for p in range(profiles):
            prof = f"{acc}-p{p}"
            recs.append(GraphRecord("edge", "has_profile", acc, prof, {"last_seen_ts": now_ms}, now_ms - p))
            recs.append(GraphRecord("node", "profile", prof, None, {"account_id": acc}, now_ms))
            for t in rnd.sample(range(title_pool), titles_per_profile):
                ts = now_ms - rnd.randrange(20 * 86_400_000)
                recs.append(GraphRecord("edge", "started_watching", prof, f"title{t:06d}",
                                        {"last_watch_ts": ts, "device_id": "d1", "position_ms": t, "action": "play",
                                         "episode_id": f"e{t % 7}", "is_live": False}, ts))
    for i in range(0, len(recs), 10_000):
        store.write(recs[i:i + 10_000])
    return [f"j-acc{a:05d}" for a in range(accounts)]


# ----------------------------------------------------------------------------- HTTP load
class Conn:
    """A minimal keep-alive HTTP/1.1 client: the load generator must not be the bottleneck on 2 cores."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.w is None:
            self.r, self.w = await asyncio.open_connection(self.host, self.port)
        assert self.r is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.auth}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.w.write(head.encode() + b"\r\n" + (body or b""))
        status_line = await self.r.readline()
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while True:
            line = await self.r.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
            elif k.lower() == "transfer-encoding" and "chunked" in v:
                chunked = True
        if chunked:  # pragma: no cover - uvicorn sends content-length for our responses
            raise RuntimeError("chunked responses not supported")
        data = await self.r.readexactly(length)
        return status, data


async def http_load(port: int, make_req: Callable[[int], tuple[str, str, bytes | None]], n: int,
                    concurrency: int, token: str | None = None) -> tuple[list[float], float]:
    lat: list[float] = []
    counter = iter(range(n))
    errors: list[str] = []

    async def worker() -> None:
        c = Conn("127.0.0.1", port, token if token is not None else TOKEN)
        for i in counter:
            method, path, body = make_req(i)
            t0 = time.perf_counter()
            status, data = await c.request(method, path, body)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(f"{status}: {data[:200]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    return lat, wall


def raw_reads(store: GraphStore, ids: list[str], limit: int, n: int, concurrency: int) -> tuple[list[float], float]:
    """Raw single-partition driver reads (execute_async + callbacks), ``concurrency`` in flight."""
    t = store.edge_table("streamed_from")
    ps = store.kv.prepare(t, EDGE_READ)
    session = store.kv.session(t)
    lat: list[float] = []
    lock = threading.Lock()
    done = threading.Event()
    state = {"issued": 0, "finished": 0}

    def issue() -> None:
        with lock:
            if state["issued"] >= n:
                return
            i = state["issued"]
            state["issued"] += 1
        t0 = time.perf_counter()
        f = session.execute_async(ps, (ids[i % len(ids)], limit))

        def ok(_rows: Any) -> None:
            lat.append(time.perf_counter() - t0)
            finish()

        def err(exc: BaseException) -> None:
            log(f"raw read failed: {exc}")
            finish()

        f.add_callbacks(ok, err)

    def finish() -> None:
        with lock:
            state["finished"] += 1
            last = state["finished"] >= n
        if last:
            done.set()
        else:
            issue()

    t0 = time.perf_counter()
    for _ in range(concurrency):
        issue()
    done.wait()
    return lat, time.perf_counter() - t0


def cassandra_process(cfg: Settings) -> psutil.Process | None:
    """The local Cassandra started by ``rdg services up`` (None when the bench runs against another)."""
    from rdg_platform.local_services.manager import ServiceManager

    pid = ServiceManager(cfg).status(["cassandra"])["cassandra"].pid
    return psutil.Process(pid) if pid else None


def cpu_s(proc: psutil.Process | None) -> float:
    """User + system CPU seconds of ``proc``, its threads and its live child processes (a pre-forked
    server's workers); 0 when unknown."""
    if proc is None:
        return 0.0
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += float(t.user + t.system)
    return total


def serve_prefork(port: int, workers: int) -> None:
    """The query service as ``rdg serve --workers`` runs it (pre-forked workers on one socket),
    its settings from the environment like the factory's."""
    import uvicorn

    from rdg_platform.cli.serve import prefork

    config = uvicorn.Config(create_app(), log_level="warning", access_log=False, loop="uvloop", http="httptools")
    prefork(config, "127.0.0.1", port, workers)


def app_without_auth() -> FastAPI:
    """The query service with authentication off: the baseline of ``--auth-compare`` only."""
    return create_app(auth=False)


def start_server(cfg: Settings, keyspace: str, port: int, auth: bool = True, workers: int = 1) -> subprocess.Popen[bytes]:
    """The query service as ``rdg serve`` runs it (its app factory reads the settings we pass down);
    ``auth=False``: the same app without bearer tokens; ``workers`` > 1: pre-forked workers."""
    env = cfg.child_env() | {"RDG_CASSANDRA_KEYSPACE": keyspace}
    factory = "rdg_platform.serving.app:create_app" if auth else "benchmarks.bench_kv_serving:app_without_auth"
    cmd = [sys.executable, "-m", "uvicorn", factory, "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
           "--loop", "uvloop", "--http", "httptools"]
    if workers > 1:
        if not auth:
            raise ValueError("workers > 1 serves the authenticated app only")
        cmd = [sys.executable, "-c", f"from benchmarks.bench_kv_serving import serve_prefork; serve_prefork({port}, {workers})"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("uvicorn exited")
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("uvicorn did not become healthy")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edges", type=int, default=1_000_000, help="edges to bulk-load (default 1,000,000)")
    ap.add_argument("--edges-per-account", type=int, default=50, help="out-degree of loaded accounts (1-hop size)")
    ap.add_argument("--write-concurrency", type=int, default=128, help="in-flight writes (both paths)")
    ap.add_argument("--chunk", type=int, default=20_000, help="records per GraphStore.write call")
    ap.add_argument("--requests", type=int, default=3000, help="requests per latency measurement")
    ap.add_argument("--concurrency", type=int, default=4, help="client concurrency for latency runs")
    ap.add_argument("--journeys", type=int, default=200, help="accounts in the 3-hop graph")
    ap.add_argument("--titles-per-profile", type=int, default=60, help="5 profiles x this = hop-2 fan-out (<=300)")
    ap.add_argument("--title-pool", type=int, default=10_000, help="distinct titles (sets hop-3 in-degree)")
    ap.add_argument("--keyspace", default="rdg_bench_kv", help="keyspace (dropped and recreated)")
    ap.add_argument("--keep", action="store_true", help="keep the keyspaces afterwards")
    ap.add_argument("--reuse", action="store_true",
                    help="skip the load: measure reads on the keyspace a previous --keep run left "
                         "(same --edges/--edges-per-account/--journeys)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON results path (default benchmarks/bench_kv_serving[_auth].json)")
    ap.add_argument("--auth-compare", action="store_true",
                    help="only measure 1-hop p99 with bearer tokens on vs off (same run, interleaved rounds); "
                         "loads --edges edges (use e.g. 50000)")
    ap.add_argument("--rounds", type=int, default=4,
                    help="interleaved rounds of each same-run comparison (raw read vs 1-hop, supernode vs 100-edge "
                         "node; --auth-compare: auth on vs off); the requests are split across them")
    ap.add_argument("--workers", type=int, default=1, help="query-service worker processes (pre-fork when > 1)")
    ap.add_argument("--supernode-edges", type=int, default=0,
                    help="also load a title with this many in-edges and one with 100, and measure a 1-hop "
                         "LATEST limit 100 on each (0: skip)")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = Path("benchmarks/bench_kv_serving_auth.json" if args.auth_compare else "benchmarks/bench_kv_serving.json")

    global TOKEN
    # An entry point: credentials not in the environment come from the local state directory
    # (Cassandra: admin, to create and drop the keyspaces; API: the reader role's token).
    cfg = local_role_settings(load_settings(), "admin")
    reader = local_role_settings(cfg.model_copy(update={"api": cfg.api.model_copy(update={"token": None})}), "reader")
    TOKEN = reader.api.token.get_secret_value() if reader.api.token else None
    if args.auth_compare:
        return auth_compare(args, cfg)
    now = int(time.time() * 1000)
    spec = isolated_spec(args.keyspace, cfg)
    raw_spec = isolated_spec(args.keyspace + "_raw", cfg)
    # A generous client timeout: on a shared 2-core machine a loaded node can stall for seconds.
    store = GraphStore.from_spec(spec, cfg.cassandra, concurrency=args.write_concurrency, request_timeout_s=60.0)
    raw_store = GraphStore.from_spec(raw_spec, cfg.cassandra, concurrency=args.write_concurrency,
                                     request_timeout_s=60.0)
    if args.reuse:
        raw_store.close()
        load: dict[str, Any] = {"reused": True, "ratio": float("nan"), "raw_edges_per_s": float("nan"),
                                "kv_edges_per_s": float("nan"), "raw_s": float("nan"), "kv_s": float("nan")}
        accounts = [f"acc{i:07d}" for i in range((args.edges + args.edges_per_account - 1) // args.edges_per_account)]
        starts = [f"j-acc{a:05d}" for a in range(args.journeys)]
    else:
        for s in (store, raw_store):
            s.kv.drop_keyspaces()
            ensure_schema(s.kv, s.spec)
        log(f"generating {args.edges:,} edges")
        records = make_edges(args.edges, args.edges_per_account, now)
        load = bulk_load(store, raw_store, records, args.write_concurrency, args.chunk)
        accounts = sorted({r.id for r in records})
        del records
        raw_store.kv.drop_keyspaces()
        raw_store.close()

        log("building the 3-hop journey graph")
        starts = build_journeys(store, args.journeys, 5, args.titles_per_profile, args.title_pool, now)

    if args.supernode_edges and not args.reuse:
        build_supernodes(store, args.supernode_edges, now)
    port = free_port()
    server = start_server(cfg, args.keyspace, port, workers=args.workers)
    results: dict[str, Any] = {"load": load, "config": vars(args) | {"out": str(args.out)}}
    try:
        rnd = random.Random(3)
        lim = args.edges_per_account

        def one_hop(i: int) -> tuple[str, str, bytes | None]:
            return "GET", f"/v1/edges/streamed_from/{accounts[rnd.randrange(len(accounts))]}?limit={lim}", None

        def trav1(i: int) -> tuple[str, str, bytes | None]:
            body = {"start": {"type": "account", "id": accounts[rnd.randrange(len(accounts))]},
                    "hops": [{"edge": "streamed_from", "limit": lim}]}
            return "POST", "/v1/traverse", json.dumps(body).encode()

        def trav3(order: str, include: bool, limit: int = 300) -> Callable[[int], tuple[str, str, bytes | None]]:
            def make(i: int) -> tuple[str, str, bytes | None]:
                body = {"start": {"type": "account", "id": starts[rnd.randrange(len(starts))]},
                        "hops": [{"edge": "has_profile", "limit": limit, "order": order},
                                 {"edge": "started_watching", "limit": limit, "order": order},
                                 {"edge": "started_watching", "direction": "in", "limit": limit, "order": order}],
                        "include_nodes": include}
                return "POST", "/v1/traverse", json.dumps(body).encode()
            return make

        log("warming up")
        asyncio.run(http_load(port, one_hop, 500, args.concurrency))
        asyncio.run(http_load(port, trav3("latest", False), 100, args.concurrency))
        raw_reads(store, accounts, lim + 1, 500, args.concurrency)

        # (name, fn(n) -> (latencies, wall seconds), requests); a same-run ratio's two sides are one
        # group, measured in --rounds interleaved rounds (A B, B A, ...) so a load spike hits both
        n3 = max(args.requests // 5, 100)
        Run = tuple[str, Callable[[int], tuple[list[float], float]], int]

        def http(make: Callable[[int], tuple[str, str, bytes | None]]) -> Callable[[int], tuple[list[float], float]]:
            return lambda n: asyncio.run(http_load(port, make, n, args.concurrency))

        groups: list[list[Run]] = [
            [("raw driver read (1 partition)", lambda n: raw_reads(store, accounts, lim + 1, n, args.concurrency),
              args.requests),
             ("1-hop GET /v1/edges", http(one_hop), args.requests)],
            [("1-hop POST /v1/traverse", http(trav1), args.requests)],
            [("3-hop traverse LATEST", http(trav3("latest", False)), n3)],
            [("3-hop traverse ANY", http(trav3("any", False)), n3)],
            [("3-hop traverse LATEST + nodes", http(trav3("latest", True)), n3)],
            [("3-hop traverse LATEST, limit 50/hop", http(trav3("latest", False, 50)), n3)],
        ]
        if args.supernode_edges:
            def latest_in(title: str) -> Callable[[int], tuple[str, str, bytes | None]]:
                return lambda i: ("GET", f"/v1/edges/started_watching/{title}?direction=in&limit=100", None)

            groups.append([("supernode 1-hop LATEST limit 100 (in-edges: --supernode-edges)", http(latest_in(SUPER)),
                            args.requests),
                           ("100-edge node 1-hop LATEST limit 100", http(latest_in(SMALL)), args.requests)])
        lat_rows = []
        cass = cassandra_process(cfg)
        srv = psutil.Process(server.pid)
        for group in groups:
            rounds = args.rounds if len(group) > 1 else 1
            acc: dict[str, dict[str, Any]] = {name: {"lat": [], "wall": 0.0, "cass": 0.0, "srv": 0.0}
                                              for name, _fn, _n in group}
            failed: dict[str, str] = {}
            for k in range(rounds):
                for name, fn, n in (group if k % 2 == 0 else list(reversed(group))):
                    if name in failed:
                        continue
                    log(f"measuring {name}" + (f" (round {k + 1}/{rounds})" if rounds > 1 else ""))
                    try:
                        cpu0 = (cpu_s(cass), cpu_s(srv))
                        lat, wall = fn(max(1, n // rounds))
                        cpu1 = (cpu_s(cass), cpu_s(srv))
                    except Exception as exc:  # record and go on: one failed run must not lose the others
                        log(f"{name} failed: {exc!s:.300}")
                        failed[name] = f"{exc!s:.300}"
                        continue
                    a = acc[name]
                    a["lat"].extend(lat)
                    a["wall"] += wall
                    a["cass"] += cpu1[0] - cpu0[0]
                    a["srv"] += cpu1[1] - cpu0[1]
            for name, _fn, _n in group:
                a = acc[name]
                lat = a["lat"]
                if name in failed or not lat:
                    lat_rows.append({"name": name, "n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"),
                                     "qps": 0.0, "cassandra_cpu_ms": float("nan"), "server_cpu_ms": float("nan"),
                                     "error": failed.get(name, "no samples")})
                    continue
                lat_rows.append({"name": name, "n": len(lat), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                                 "qps": len(lat) / a["wall"], "rounds": rounds,
                                 "cassandra_cpu_ms": a["cass"] * 1000 / len(lat) if cass else float("nan"),
                                 "server_cpu_ms": a["srv"] * 1000 / len(lat)})
                log(f"  {name}: p50 {lat_rows[-1]['p50_ms']:.2f} ms, p99 {lat_rows[-1]['p99_ms']:.2f} ms, "
                    f"{lat_rows[-1]['qps']:,.0f} QPS")
        results["latency"] = lat_rows
        # sample fan-out of the 3-hop query, for the record
        import httpx
        body = json.loads(trav3("latest", False)(0)[2] or b"{}")
        hdr = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.post(f"http://127.0.0.1:{port}/v1/traverse", json=body, timeout=30, headers=hdr).json()
        results["three_hop_fanout"] = [len(lv["edges"]) for lv in r["levels"]]
        body = json.loads(trav3("latest", False, 50)(0)[2] or b"{}")
        r = httpx.post(f"http://127.0.0.1:{port}/v1/traverse", json=body, timeout=30, headers=hdr).json()
        results["three_hop_fanout_limit50"] = [len(lv["edges"]) for lv in r["levels"]]
    finally:
        server.terminate()
        server.wait(10)
        if not args.keep:
            try:
                store.kv.drop_keyspaces()
            except Exception as exc:
                log(f"could not drop {args.keyspace}: {exc!s:.200}")
        store.close()

    raw_p99 = results["latency"][0]["p99_ms"]
    by = {r["name"]: r for r in results["latency"]}
    one = by["1-hop GET /v1/edges"]["p99_ms"]
    three = by["3-hop traverse LATEST"]["p99_ms"]
    results["targets"] = {
        "1hop_p99<=2x_raw": one <= 2 * raw_p99, "1hop_p99<=10ms": one <= 10.0, "3hop_p99<=50ms": three <= 50.0}
    if not load.get("reused"):  # --reuse loads nothing: no load ratio to judge
        results["targets"]["load_ratio>=0.7"] = load["ratio"] >= 0.7
    sup = [r for r in results["latency"] if r["name"].startswith("supernode")]
    if sup:
        small = by["100-edge node 1-hop LATEST limit 100"]["p99_ms"]
        results["supernode_p99_ratio"] = sup[0]["p99_ms"] / small
        results["targets"]["supernode_p99<=2x_100_edge_node"] = results["supernode_p99_ratio"] <= 2.0

    print(f"\n### KV layer and serving (edges={args.edges:,}, client concurrency={args.concurrency})\n")
    print("| bulk load | edges/s | seconds |\n|---|---:|---:|")
    print(f"| raw driver execute_concurrent_with_args | {load['raw_edges_per_s']:,.0f} | {load['raw_s']:.1f} |")
    print(f"| KV layer GraphStore.write | {load['kv_edges_per_s']:,.0f} | {load['kv_s']:.1f} |")
    print(f"| ratio KV / raw | {load['ratio']:.2f} | |\n")
    print("| read | n | p50 ms | p99 ms | QPS | Cassandra CPU ms/req | query-service CPU ms/req |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for r in results["latency"]:
        srv_cpu = "-" if r["name"].startswith("raw") else f"{r['server_cpu_ms']:.1f}"
        print(f"| {r['name']} | {r['n']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['qps']:,.0f} | "
              f"{r['cassandra_cpu_ms']:.1f} | {srv_cpu} |")
    print(f"\n3-hop edges per level: {results['three_hop_fanout']} (limit 300/hop), "
          f"{results['three_hop_fanout_limit50']} (limit 50/hop); 1-hop edges: {args.edges_per_account}")
    print("\n| target | met |\n|---|---|")
    for k, v in results["targets"].items():
        print(f"| {k} | {'yes' if v else 'NO'} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    log(f"wrote {args.out}")
    return 0


def auth_compare(args: argparse.Namespace, cfg: Settings) -> int:
    """1-hop ``GET /v1/edges`` p99 with tokens on vs off, same graph, same run, interleaved rounds."""
    now = int(time.time() * 1000)
    spec = isolated_spec(args.keyspace, cfg)
    store = GraphStore.from_spec(spec, cfg.cassandra, concurrency=args.write_concurrency, request_timeout_s=60.0)
    if not args.reuse:
        store.kv.drop_keyspaces()
        ensure_schema(store.kv, spec)
        log(f"loading {args.edges:,} edges")
        records = make_edges(args.edges, args.edges_per_account, now)
        for i in range(0, len(records), args.chunk):
            store.write(records[i:i + args.chunk])
        accounts = sorted({r.id for r in records})
        del records
    else:
        accounts = [f"acc{i:07d}" for i in range((args.edges + args.edges_per_account - 1) // args.edges_per_account)]
    on_port, off_port = free_port(), free_port()
    servers = {"auth on": (start_server(cfg, args.keyspace, on_port), on_port, TOKEN),
               "auth off": (start_server(cfg, args.keyspace, off_port, auth=False), off_port, "")}
    lat: dict[str, list[float]] = {k: [] for k in servers}
    cpu: dict[str, float] = {k: 0.0 for k in servers}  # server CPU seconds over the measured rounds
    rnd = random.Random(5)
    lim = args.edges_per_account

    def one_hop(i: int) -> tuple[str, str, bytes | None]:
        return "GET", f"/v1/edges/streamed_from/{accounts[rnd.randrange(len(accounts))]}?limit={lim}", None

    try:
        import httpx
        probe = httpx.get(f"http://127.0.0.1:{on_port}/v1/edges/streamed_from/{accounts[0]}", timeout=10)
        assert probe.status_code == 401, f"the auth-on server answered {probe.status_code} without a token"
        log("warming up")
        for _, port, token in servers.values():
            asyncio.run(http_load(port, one_hop, 500, args.concurrency, token))
        for rnd_no in range(args.rounds):
            order = list(servers) if rnd_no % 2 == 0 else list(servers)[::-1]
            for name in order:
                proc, port, token = servers[name]
                ps = psutil.Process(proc.pid)
                c0 = cpu_s(ps)
                got, _ = asyncio.run(http_load(port, one_hop, args.requests, args.concurrency, token))
                cpu[name] += cpu_s(ps) - c0
                lat[name].extend(got)
                log(f"round {rnd_no + 1} {name}: p50 {pct(got, 50):.2f} ms, p99 {pct(got, 99):.2f} ms")
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait(10)
        if not args.keep:
            store.kv.drop_keyspaces()
        store.close()
    rows = {k: {"n": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99),
                "server_cpu_us_per_req": cpu[k] * 1e6 / max(1, len(v))} for k, v in lat.items()}
    ratio = rows["auth on"]["p99_ms"] / rows["auth off"]["p99_ms"]
    results = {"config": vars(args) | {"out": str(args.out)}, "latency": rows, "p99_ratio_auth_on_off": ratio,
               "targets": {"1hop_p99_auth/no_auth<=1.1": ratio <= 1.1}}
    print(f"\n### API authentication cost (1-hop GET /v1/edges, limit {lim}, client concurrency "
          f"{args.concurrency}, {args.rounds} interleaved rounds x {args.requests} requests)\n")
    print("| server | n | p50 ms | p99 ms | server CPU us/req |\n|---|---:|---:|---:|---:|")
    for k, r in rows.items():
        print(f"| {k} | {r['n']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['server_cpu_us_per_req']:.0f} |")
    print(f"\np99 ratio auth on / off: {ratio:.3f} (target <= 1.1: {'met' if ratio <= 1.1 else 'NOT met'})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
