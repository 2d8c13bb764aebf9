"""``rdg generate``: produce deterministic member journeys to the source topics.

The lead registers it with ``app.command("generate")(generate)``.
Exit codes: 0 when every record was delivered; 1 on delivery failures or an unreachable service;
2 on invalid options.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

import typer

from rdg_platform.cli.context import role_settings

_HELP = """Produce realistic member journeys (phone -> TV -> tablet game, at scale) to Kafka.

Catalog records (catalog.titles, catalog.games) are sent first, then member.login / member.playback / member.gaming events for MEMBERS accounts, keyed by account_id, Avro in the Confluent framing through the schema registry.

Kafka and the registry are the ones the settings name (RDG_KAFKA_BOOTSTRAP and its security settings, RDG_REGISTRY_URL and its credentials; see `rdg config show`).

Time model: --duration is SIMULATED time: event times run from --start-time to --start-time + --duration. --rate only paces the sending in wall-clock time (records per second, 0 = as fast as possible). --events caps the number of good member events (the capped stream is a prefix of the uncapped one). The Kafka record timestamp is the event time.

Determinism: the same --seed, --start-time and other options give byte-identical records (keys, values, event ids). --start-time defaults to now minus --duration (floored to the second), so the simulated span ends now and no event lies in the future (the processors dead-letter events beyond the allowed clock skew); runs without it differ only in their event times; pass it to reproduce a run exactly.

--bad-fraction F injects, after each good member event with probability F, one extra bad record with header `rdg-bad: <kind>`: garbage (random bytes), wrong_schema_id (a catalog schema's id), unknown_schema_id (an id nobody registered), truncated_avro (body cut in half), missing_field (valid Avro whose required string field, e.g. device_id, is empty ""), future_event_time (valid Avro whose event_time is 10 years ahead of its Kafka timestamp: a device with a wrong clock).
"""


def _parse_start(value: str | None, duration_s: float) -> int:
    """Epoch ms of the first event. By default the simulated span ends now (it starts ``duration``
    ago), so no event is dated in the future, where the processors' clock-skew guard would
    dead-letter it."""
    if value is None or value == "ago":
        return (int(time.time()) - int(duration_s)) * 1000
    if value == "now":
        return int(time.time()) * 1000
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither epoch milliseconds nor an ISO-8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def generate(
    members: Annotated[int, typer.Option("--members", "-n", min=1, help="Number of member accounts.")] = 100,
    rate: Annotated[float, typer.Option("--rate", min=0.0, help="Records per wall-clock second; 0 = as fast as possible.")] = 0.0,
    duration: Annotated[float, typer.Option("--duration", min=1.0, help="Simulated seconds of activity (event-time span).")] = 600.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed + same options => same records.")] = 42,
    events: Annotated[int | None, typer.Option("--events", min=0, help="Stop after this many good member events.")] = None,
    bad_fraction: Annotated[float, typer.Option("--bad-fraction", min=0.0, max=1.0,
                                                help="Probability of injecting a bad record after each good member event.")] = 0.0,
    start_time: Annotated[str | None, typer.Option("--start-time", help="Event time of the start: epoch ms, ISO-8601, 'now', or 'ago' (default: now minus --duration, so the span ends now).")] = None,
    titles: Annotated[int, typer.Option("--titles", min=1, help="Catalog titles (Zipf-popular).")] = 500,
    games: Annotated[int, typer.Option("--games", min=1, help="Catalog games (Zipf-popular).")] = 50,
    id_prefix: Annotated[str, typer.Option("--id-prefix", help="Prefix for every generated id (isolates runs).")] = "",
    no_catalog: Annotated[bool, typer.Option("--no-catalog", help="Do not send the catalog records first.")] = False,
    ensure: Annotated[bool, typer.Option("--ensure-topics/--no-ensure-topics", help="Create/align the topics first.")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only generate and count (no Kafka, no registry).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    from collections import Counter

    from rdg_platform.avro import RegistryError
    from rdg_platform.generator import GeneratorConfig, ProduceError, generate_events, run_generator

    try:
        cfg = GeneratorConfig(members=members, seed=seed, start_ms=_parse_start(start_time, duration), duration_s=duration,
                              max_events=events, bad_fraction=bad_fraction, titles=titles, games=games,
                              id_prefix=id_prefix, include_catalog=not no_catalog)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    start_iso = datetime.fromtimestamp(cfg.start_ms / 1000, tz=UTC).isoformat()
    if dry_run:
        counts: Counter[str] = Counter()
        for ev in generate_events(cfg):
            counts[ev.topic if ev.bad is None else f"{ev.topic} (bad {ev.bad})"] += 1
        for topic, n in sorted(counts.items()):
            typer.echo(f"{topic:<40} {n:>10}")
        typer.echo(f"start-time {cfg.start_ms} ({start_iso}), seed {seed}: {sum(counts.values())} records")
        return
    s = role_settings("upstream")
    if ensure:
        from confluent_kafka.admin import AdminClient

        from rdg_platform.kafka_client import client_config
        from rdg_platform.topology import ensure_topics

        bs = s.kafka.bootstrap_servers
        try:
            admin = role_settings("admin")
            ensure_topics(AdminClient(client_config(admin.kafka)), s.load_spec(), overrides=s.topics_file)
        except Exception as exc:  # KafkaException, timeouts, bad security settings: report, do not trace
            typer.echo(f"error: cannot provision topics on {bs}: {exc} (creating topics needs the admin role; "
                       "with a producing role, create them with `rdg topics create` as admin and pass "
                       "--no-ensure-topics)", err=True)
            raise typer.Exit(1) from exc
    try:
        summary = run_generator(cfg, s, rate=rate, quiet=quiet)
    except (ProduceError, RegistryError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(summary.table())
    typer.echo(f"start-time {cfg.start_ms} ({start_iso}), seed {seed} (rerun with --start-time {cfg.start_ms} "
               "to reproduce)")


generate.__doc__ = _HELP
