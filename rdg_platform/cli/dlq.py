"""``rdg dlq list|show|redrive``: inspect dead letters and send them back after a fix.

Acts as the admin role by default (credentials in the environment or ``RDG_CONFIG`` win; otherwise
the local services' admin credentials): reading every DLQ and writing back to source topics is an
operator's task. The operations live in :mod:`rdg_platform.streaming.dlq`; this module parses
options and prints.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from rdg_platform.cli.context import role_settings

dlq_app = typer.Typer(
    help="Dead letters: counts by reason, one record's headers and payload, re-drive after a fix (never twice).",
    no_args_is_help=True,
)

TopicOpt = Annotated[list[str] | None, typer.Option(
    "--topic", "-t", help="A DLQ topic, or the source/graph topic whose DLQ it is (repeatable; default: all).")]


def _fail(msg: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def _topics(spec: Any, names: list[str] | None) -> list[str]:
    from rdg_platform.streaming.dlq import dlq_topics, resolve_dlq_topic

    if not names:
        return dlq_topics(spec)
    try:
        return [resolve_dlq_topic(spec, n) for n in names]
    except ValueError as exc:
        raise _fail(str(exc), 2) from None


@dlq_app.command("list")
def list_(topic: TopicOpt = None,
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Counts of dead letters by reason per DLQ topic (and how many were re-driven)."""
    from rdg_platform.streaming.dlq import read_topics, redriven, summarize

    s = role_settings("admin")
    spec = s.load_spec()
    topics = _topics(spec, topic)
    try:
        summary = summarize(read_topics(s, topics), redriven(s))
    except Exception as exc:  # broker unreachable, authorization
        raise _fail(f"cannot read the DLQ topics on {s.kafka.bootstrap_servers}: {exc}") from exc
    if as_json:
        typer.echo(json.dumps({t: {r: {"records": n, "redriven": rd} for r, (n, rd) in by.items()}
                               for t, by in summary.items()}, indent=2, sort_keys=True))
        return
    if not summary:
        typer.echo("no dead letters")
        return
    typer.echo(f"{'dlq topic':<32} {'reason':<26} {'records':>8} {'redriven':>9}")
    for t in sorted(summary):
        for reason, (n, rd) in sorted(summary[t].items()):
            typer.echo(f"{t:<32} {reason:<26} {n:>8} {rd:>9}")


@dlq_app.command()
def show(topic: Annotated[str, typer.Argument(help="The DLQ topic (or the topic whose DLQ it is).")],
         partition: Annotated[int, typer.Argument(help="Partition of the record.", min=0)],
         offset: Annotated[int, typer.Argument(help="Offset of the record.", min=0)]) -> None:
    """One dead letter: its headers, and its payload decoded when it decodes (Avro with the registry
    for source topics, JSON for graph topics), else why not and its first bytes."""
    from rdg_platform.avro import AvroSerde
    from rdg_platform.streaming.dlq import decode_payload, read_one, redriven

    s = role_settings("admin")
    spec = s.load_spec()
    (dlq,) = _topics(spec, [topic])
    try:
        letter = read_one(s, dlq, partition, offset)
    except Exception as exc:
        raise _fail(f"cannot read {dlq}: {exc}") from exc
    if letter is None:
        raise _fail(f"no record at {dlq}/{partition}/{offset}", 1)
    ts = datetime.fromtimestamp(letter.timestamp_ms / 1000, tz=UTC).isoformat()
    typer.echo(f"record    {letter.coordinates} (timestamp {ts})")
    typer.echo(f"key       {letter.key.decode('utf-8', 'replace') if letter.key is not None else None}")
    for k, v in letter.header_text().items():
        typer.echo(f"header    {k}: {v}")
    entry = redriven(s).get(letter.coordinates)
    typer.echo(f"redriven  {json.dumps(entry, sort_keys=True) if entry else 'no'}")
    with AvroSerde.from_settings(s.registry, timestamps="millis") as serde:
        payload, why = decode_payload(spec, letter, lambda t, b: serde.decode_for_topic(t, b)[1])
    if why is None:
        typer.echo("payload   " + json.dumps(payload, indent=2, sort_keys=True, default=str).replace("\n", "\n          "))
    else:
        head = (letter.value or b"")[:64].hex(" ")
        typer.echo(f"payload   does not decode: {why}")
        typer.echo(f"bytes     {len(letter.value or b'')} bytes: {head}{' ...' if len(letter.value or b'') > 64 else ''}")


@dlq_app.command()
def redrive(topic: TopicOpt = None,
            reason: Annotated[str | None, typer.Option("--reason", help="Only records dead-lettered for this reason.")] = None,
            partition: Annotated[int | None, typer.Option("--partition", min=0, help="Only this DLQ partition.")] = None,
            from_offset: Annotated[int | None, typer.Option("--from-offset", min=0, help="First DLQ offset (inclusive).")] = None,
            to_offset: Annotated[int | None, typer.Option("--to-offset", min=0, help="Last DLQ offset (inclusive).")] = None,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be re-driven, send nothing.")] = False,
            ) -> None:
    """Send matching dead letters back to their source topic, after the cause was fixed.

    Each record keeps its key and bytes and gets headers rdg.redrive.from (dlq topic/partition/offset),
    rdg.redrive.source (original coordinates) and rdg.redrive.reason. Never twice: each re-drive is
    recorded in the compacted topic rdg.dlq.redriven in the same Kafka transaction as the record, and
    records already recorded there are skipped.
    """
    from rdg_platform.streaming.dlq import RedriveFilter
    from rdg_platform.streaming.dlq import redrive as do_redrive

    if from_offset is not None and to_offset is not None and from_offset > to_offset:
        raise _fail(f"--from-offset {from_offset} is after --to-offset {to_offset}", 2)
    s = role_settings("admin")
    spec = s.load_spec()
    flt = RedriveFilter(tuple(_topics(spec, topic)), reason, partition, from_offset, to_offset)
    try:
        res = do_redrive(s, spec, flt, dry_run=dry_run)
    except Exception as exc:
        raise _fail(f"re-drive failed, nothing was sent: {exc}") from exc
    verb = "would re-drive" if dry_run else "re-drove"
    typer.echo(f"matched {res.matched}; {verb} {len(res.sent)}; skipped {len(res.already)} already re-driven")
    for target, n in sorted(res.by_target.items()):
        typer.echo(f"  -> {target}: {n}")
