"""``rdg demo``: the whole platform on one machine, from nothing to a queryable live graph.

Brings up the real services, provisions topics and schemas, starts the streaming apps, the graph
query service and the Dagster UI as background processes, sends generated member journeys, and then
prints one member's journey as the graph service sees it. Everything keeps running afterwards so the
graph can be explored; ``rdg demo --stop`` stops what the demo started.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import httpx
import typer

from rdg_platform.cli.context import role_settings, settings
from rdg_platform.processes import PidFile, find, start_detached, stop
from rdg_platform.settings import Settings

if TYPE_CHECKING:
    from rdg_platform.generator import GeneratorConfig
    from rdg_platform.serving.client import GraphClient

ROOT = Path(__file__).resolve().parents[2]
BACKGROUND = ("api", "dagster")
STOP_GRACE_S = 20.0


def _pid_file(s: Settings, name: str) -> PidFile:
    return PidFile(s.state_dir / "run" / f"demo-{name}.json")


def _log_file(s: Settings, name: str) -> Path:
    return s.logs_dir / f"demo-{name}.log"


def _start_background(s: Settings, name: str, cmd: list[str]) -> int:
    """Start one of the demo's background processes unless its pid file names a live one."""
    pid_file = _pid_file(s, name)
    proc = pid_file.process()
    if proc is not None:
        return int(proc.pid)
    env = {**s.child_env(), "PYTHONUNBUFFERED": "1"}
    return start_detached(cmd, log_file=_log_file(s, name), env=env, cwd=ROOT, pid_file=pid_file).record.pid


def _stop_background(s: Settings, name: str) -> bool:
    """Stop it (with its process group: the Dagster UI runs a webserver and a daemon)."""
    pid_file = _pid_file(s, name)
    proc = find(pid_file.read())
    if proc is not None:
        stop([proc], grace_s=STOP_GRACE_S)
    pid_file.remove()
    return proc is not None


def _wait_http(url: str, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
    raise typer.BadParameter(f"{what} did not answer on {url} within {timeout_s:.0f}s; log {log}:\n" + "\n".join(tail))


def _dagster_url(s: Settings) -> str:
    host = s.dagster.bind_host
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{s.dagster.port}"


def _step(msg: str) -> None:
    typer.secho(f"==> {msg}", fg=typer.colors.CYAN, bold=True)


def _client(s: Settings) -> GraphClient:
    from rdg_platform.local_services.credentials import local_role_settings
    from rdg_platform.serving.client import GraphClient

    token = local_role_settings(s, "reader").api.token
    return GraphClient(s.api.base_url, None if token is None else token.get_secret_value())


def _print_journey(s: Settings, account_id: str) -> None:
    with _client(s) as client:
        account = client.node("account", account_id)
        typer.echo(f"account {account_id}: {account['properties'] if account else '(not yet in the graph)'}")
        for edge in ("logged_in_from", "streamed_from"):
            for e in client.edges(edge, account_id, limit=10, order="latest")["edges"]:
                typer.echo(f"  -{edge}-> device {e['dst']} {e['properties'].get('device_type', '')}")
        res: dict[str, Any] = client.traverse(
            "account", account_id,
            [{"edge": "has_profile", "direction": "out", "limit": 5},
             {"edge": "started_watching", "direction": "out", "limit": 5, "order": "latest"}],
            include_nodes=True)
        levels = res.get("levels", [])
        titles = {n["id"]: n for n in (levels[1].get("nodes", []) if len(levels) > 1 else [])}
        for e in levels[1]["edges"] if len(levels) > 1 else []:
            name = titles.get(e["dst"], {}).get("properties", {}).get("name", e["dst"])
            typer.echo(f"  -has_profile-> profile {e['src']} -started_watching-> {name!r} "
                       f"on device {e['properties'].get('device_id')} at position {e['properties'].get('position_ms')} ms")
        for p in levels[0]["edges"] if levels else []:
            for g in client.edges("plays", p["dst"], limit=5, order="latest")["edges"]:
                typer.echo(f"  -has_profile-> profile {p['dst']} -plays-> game {g['dst']} ({g['properties'].get('action')})")


def demo(
    members: Annotated[int, typer.Option(help="Member accounts to simulate.")] = 200,
    duration: Annotated[float, typer.Option(help="Simulated seconds of activity to send.")] = 600.0,
    rate: Annotated[float, typer.Option(help="Records per wall-clock second (0 = as fast as possible).")] = 500.0,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 7,
    ui: Annotated[bool, typer.Option(help="Start the Dagster UI too.")] = True,
    stop_all: Annotated[bool, typer.Option("--stop", help="Stop everything the demo started (apps, API, UI, services).")] = False,
) -> None:
    """Run the platform end to end: services, topics, apps, graph API, Dagster UI and live events."""
    from confluent_kafka.admin import AdminClient

    from rdg_platform.avro import AvroSerde, SchemaRegistry
    from rdg_platform.generator import GeneratorConfig, run_generator
    from rdg_platform.kafka_client import client_config
    from rdg_platform.kv.graph_store import GraphStore
    from rdg_platform.local_services.manager import ServiceError, ServiceManager
    from rdg_platform.streaming.supervisor import AppSupervisor
    from rdg_platform.topology import ensure_topics

    cfg = settings()
    if stop_all:
        for name in BACKGROUND:
            typer.echo(f"{name}: {'stopped' if _stop_background(cfg, name) else 'not running'}")
        AppSupervisor(role_settings("app")).down()
        typer.echo("streaming apps: stopped")
        ServiceManager(cfg, echo=typer.echo).down()
        return

    t0 = time.monotonic()
    _step("1/6 services: Kafka (KRaft), Cassandra 5.0, Apicurio schema registry")
    try:
        ServiceManager(cfg, echo=typer.echo).up()
    except ServiceError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None

    spec = cfg.load_spec()
    admin = role_settings("admin")  # provisioning: topics, schemas, tables (each role gets only its job)
    _step("2/6 topics, schemas and graph namespaces")
    res = ensure_topics(AdminClient(client_config(admin.kafka)), spec, overrides=cfg.topics_file)
    typer.echo(f"topics: {len(res.created)} created, {len(res.altered)} realigned")
    with AvroSerde(SchemaRegistry.from_settings(cfg.registry)) as serde:
        ids = serde.register_all(spec)
    typer.echo(f"schemas registered: {ids}")
    store = GraphStore.from_spec(spec, admin.cassandra)
    try:
        store.ensure_schema()
    finally:
        store.close()
    typer.echo(f"namespaces ready in keyspace(s) {sorted({ns.keyspace for ns in spec.namespaces.values()})}")

    _step("3/6 streaming apps (one processor per source topic, sinks per namespace group)")
    states = AppSupervisor(role_settings("app")).up()
    for st in states:
        typer.echo(f"  {st.name}: {st.state} pid={st.pid}")

    _step("4/6 graph query service")
    rdg = str(Path(sys.executable).parent / "rdg")
    api_url = cfg.api.base_url
    _start_background(cfg, "api", [rdg, "serve"])
    _wait_http(f"{api_url}/healthz", 60, "graph query service", _log_file(cfg, "api"))
    typer.echo(f"  {api_url}  (OpenAPI at {api_url}/docs)")

    dagster_url = _dagster_url(cfg)
    if ui:
        _step("5/6 Dagster UI (webserver + daemon)")
        _start_background(cfg, "dagster", [rdg, "ui"])
        _wait_http(f"{dagster_url}/server_info", 240, "Dagster UI", _log_file(cfg, "dagster"))
        typer.echo(f"  {dagster_url}")
    else:
        _step("5/6 Dagster UI skipped (--no-ui)")

    _step(f"6/6 sending {members} members' journeys ({duration:.0f} simulated seconds) at {rate or 'max'} records/s")
    gcfg = GeneratorConfig(members=members, seed=seed, start_ms=int(time.time() * 1000) - int(duration * 1000),
                           duration_s=duration)
    summary = run_generator(gcfg, role_settings("upstream"), rate=rate, quiet=not sys.stdout.isatty())
    typer.echo(summary.table())

    account_id, login_ms = _richest_account(gcfg)
    _wait_for_graph(cfg, account_id, login_ms)
    typer.secho(f"\nA live member journey (account {account_id}):", bold=True)
    _print_journey(cfg, account_id)
    typer.secho(f"\nThe demo is up ({time.monotonic() - t0:.0f}s). Explore:", bold=True)
    typer.echo(f"  rdg query node account {account_id}")
    typer.echo(f"  rdg query edges logged_in_from {account_id}")
    typer.echo("  rdg apps status        rdg services status")
    if ui:
        typer.echo(f"  Dagster UI: {dagster_url}")
    typer.echo("  rdg generate --members 1000 --rate 1000   (more traffic)")
    typer.echo("  rdg demo --stop        (stop everything)")
    typer.secho(f"\nExplorer (paste the token from `rdg env --role reader`, RDG_API_TOKEN):\n"
                f"  {api_url}/explore?type=account&id={quote(account_id, safe='')}", bold=True)


def _wait_for_graph(cfg: Settings, account_id: str, login_ms: int, timeout_s: float = 180.0) -> None:
    """Wait until this run's last login of the showcased account is in the graph (its account node's
    ``last_seen_ts`` reaches ``login_ms``): the dedup window must flush and the
    sinks write, and apps started on topics holding earlier traffic first work through that backlog.
    Prints the apps' total consumer lag while waiting, and says what to do if it takes too long."""
    from rdg_platform.serving.client import GraphAPIError
    from rdg_platform.streaming.supervisor import AppSupervisor

    window_s = cfg.streaming.dedup_window_s
    typer.echo(f"waiting for account {account_id} to reach the graph (dedup window {window_s:.0f}s, then the sinks) ...")
    sup = AppSupervisor(cfg)
    t0 = time.monotonic()
    last_report = t0
    with _client(cfg) as client:
        while True:
            try:
                node = client.node("account", account_id)
                if node is not None and int(node["properties"].get("last_seen_ts") or 0) >= login_ms:
                    typer.echo(f"  in the graph after {time.monotonic() - t0:.0f}s")
                    return
            except (httpx.HTTPError, GraphAPIError) as exc:  # the API restarting: reported, then retried
                typer.echo(f"  graph API not answering yet: {exc}")
            now = time.monotonic()
            if now - t0 > timeout_s:
                lag = sum(s.lag or 0 for s in sup.status())
                typer.secho(f"  not in the graph after {timeout_s:.0f}s; the apps still have {lag:,.0f} records "
                            "to process (earlier traffic on these topics). It will appear when they catch up: "
                            f"`rdg apps status`, `rdg query node account {account_id}`.", fg=typer.colors.YELLOW)
                return
            if now - last_report >= 10:  # the lag is scraped from every app's metrics: only when shown
                lag = sum(s.lag or 0 for s in sup.status())
                typer.echo(f"  {now - t0:.0f}s: apps' consumer lag {lag:,.0f} records")
                last_report = now
            time.sleep(1.0)


def _richest_account(gcfg: GeneratorConfig) -> tuple[str, int]:
    """The first account the generator sent login, playback and gaming events for (the full story), and
    the event time of its last login in this run: the graph holds this run's data once the account's
    ``last_seen_ts`` (last-write-wins by event time) has reached it. Account ids repeat across runs, so
    the node merely existing proves nothing."""
    from rdg_platform.generator.journeys import generate_events

    seen: dict[str, set[str]] = {}
    last_login: dict[str, int] = {}
    chosen = ""
    for ev in generate_events(gcfg):
        if ev.bad or not ev.topic.startswith("member."):
            continue
        if ev.topic == "member.login":
            last_login[ev.key] = ev.timestamp_ms
        if not chosen:
            topics = seen.setdefault(ev.key, set())
            topics.add(ev.topic)
            if len(topics) == 3 and ev.key in last_login:
                chosen = ev.key
    chosen = chosen or next(iter(last_login), "")
    return chosen, last_login.get(chosen, 0)
