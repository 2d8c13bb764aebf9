"""The journeys rendered straight to ready-to-send Kafka records: what ``rdg generate`` produces.

:func:`rdg_platform.generator.journeys.generate_events` yields one :class:`Event` (a dict) per record,
merged across members with ``heapq.merge``; encoding those dicts costs a dict build, a merge step and
an Avro encode per record, several times the cost of ``Producer.produce`` itself. This module
renders the same stream (byte for byte: unit-tested against ``generate_events`` + :class:`EventEncoder`)
cheaper:

- Sessions are data (:class:`~rdg_platform.generator.journeys.Session`), and most records are their
  HEARTBEATs, which differ from one another only in event_id, event_time, action and (playback)
  position_ms. A session's shared fields are Avro-encoded once
  (:func:`rdg_platform.avro.encoder.fields_encoder`) and each event is one ``bytes.join`` of
  pre-encoded pieces and the changing fields.
- The merge is done a window of simulated time at a time: every member with events in the window
  appends them (members in index order, each in time order), then one stable C sort by event time
  gives exactly the ``(event_time, member index, seq)`` order of ``heapq.merge``, because a member's
  event times strictly increase. The window size only trades memory for per-window overhead; it does
  not change the output.
- Records are tuples ``(kafka topic, value, key, timestamp, headers, source)`` handed to
  :func:`rdg_platform.generator.producer.produce_batches` a window at a time.

A topic whose schema does not have the session layout this splicing assumes (or whose spliced bytes
differ from :meth:`~rdg_platform.avro.serde.AvroSerde.encode` on the first session, checked at run
time) is encoded event by event through the serde instead: slower, never different.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import random
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from multiprocessing.connection import Connection
from operator import itemgetter
from typing import Any

from rdg_platform.avro.encoder import MASK14, VARINT_CONT14, VARINT_LAST14, fields_encoder, long_bytes
from rdg_platform.avro.framing import HEADER, frame_header
from rdg_platform.avro.serde import AvroSerde
from rdg_platform.gcpause import gc_paused
from rdg_platform.generator.journeys import (
    CATALOG_TOPICS,
    GAMING,
    LOGIN,
    MEMBER_TOPICS,
    PLAYBACK,
    VALUE_BAD_KINDS,
    Catalog,
    Event,
    GeneratorConfig,
    Login,
    Segment,
    Session,
    build_catalog,
    make_bad,
    member_segments,
)

# (kafka topic, value, key, timestamp ms, headers, the session/login it came from or None)
Record = tuple[str, bytes, bytes | None, int, list[tuple[str, bytes]] | None, Segment | None]
Batch = list[Record]

# About this many member events per window (the window is sized from the member count).
_WINDOW_MS_X_MEMBERS = 200_000_000
_by_time = itemgetter(3)
_join = b"".join
_digits = b"%d".__mod__
_FIRST = {PLAYBACK: "START", GAMING: "LAUNCH"}
# Inlined varints: zigzag values z in [2^28, 2^42) take three 14-bit chunks (event times from 1978 to
# 2109 in epoch ms), positions z < 2^28 one or two.
_Z_LO, _Z_HI, _ZP_HI = 1 << 28, 1 << 42, 1 << 28


class _Layout(Exception):
    """The schema does not have the layout the session splicer assumes."""


class _Heads(dict[int, bytes]):
    """Digit count -> Confluent header + Avro string length + the event id prefix."""

    def __init__(self, header: bytes, eid: bytes) -> None:
        super().__init__()
        self.header, self.eid = header, eid

    def __missing__(self, digits: int) -> bytes:
        v = self[digits] = self.header + long_bytes(len(self.eid) + digits) + self.eid
        return v


class SessionCodec:
    """Encodes a topic's session events by splicing.

    Expected layout (checked against the schema): ``event_id`` (string), ``event_time`` (long /
    timestamp-millis), the session's shared fields, ``action`` (enum), then for playback
    ``position_ms`` (long), then more shared fields. A value is
    ``head[len(digits)] + digits + long(event_time) + mid + action + [long(position)] + tail`` where
    ``head`` is the Confluent header plus the length and text of the member's event id prefix.
    """

    def __init__(self, topic: str, schema: Mapping[str, Any], header: bytes) -> None:
        fields = list(schema["fields"])
        names = [f["name"] for f in fields]
        if names[:2] != ["event_id", "event_time"] or fields[0]["type"] != "string":
            raise _Layout("event_id, event_time are not the first fields")
        et = fields[1]["type"]
        if et != "long" and et != {"type": "long", "logicalType": "timestamp-millis"}:
            raise _Layout("event_time is not a long")
        if "action" not in names:
            raise _Layout("no action field")
        ia = names.index("action")
        at = fields[ia]["type"]
        if not isinstance(at, dict) or at.get("type") != "enum":
            raise _Layout("action is not an enum")
        self.with_position = topic == PLAYBACK
        tail_from = ia + 1
        if self.with_position:
            if names[ia + 1:ia + 2] != ["position_ms"] or fields[ia + 1]["type"] != "long":
                raise _Layout("position_ms does not follow action")
            tail_from += 1
        mid, tail = names[2:ia], names[tail_from:]
        if {"event_id", "event_time", "action", "position_ms"} & {*mid, *tail}:
            raise _Layout("a changing field is among the shared ones")
        self.topic = topic
        self.header = header
        self.mid: Callable[[Mapping[str, Any]], bytes] = fields_encoder(schema, mid)
        tail_enc = fields_encoder(schema, tail) if tail else None
        self.tail: Callable[[Mapping[str, Any]], bytes] = tail_enc or (lambda _r: b"")
        self.actions = {s: long_bytes(i) for i, s in enumerate(at["symbols"])}
        self.verified = False

    def heads(self, eid: str) -> _Heads:
        """Header + Avro string length + text of ``eid``, by the number of sequence digits (filled lazily:
        most members only ever need one or two digit counts)."""
        return _Heads(self.header, eid.encode())

    def shared(self, seg: Session) -> tuple[bytes, bytes]:
        """The pre-encoded shared fields before and after the action of one session."""
        rec = {**seg.base, "is_live": seg.live}
        return self.mid(rec), self.tail(rec)

    def one(self, seg: Session, heads: _Heads, mid: bytes, tail: bytes, k: int, ts: int) -> bytes:
        """Event ``k`` (time ``ts``) of ``seg``."""
        action = self.actions[_FIRST[seg.topic] if k == 0 else seg.final if ts == seg.stop else "HEARTBEAT"]
        d = _digits(seg.seq0 + k)
        if self.with_position:
            return _join((heads[len(d)], d, long_bytes(ts), mid, action, long_bytes(seg.pos0 + ts - seg.t0), tail))
        return _join((heads[len(d)], d, long_bytes(ts), mid, action, tail))


class _Cursor:
    """Where one member is in its journey: the current segment and its next event number."""

    __slots__ = ("segs", "seg", "k", "key", "heads", "mid", "tail")

    def __init__(self, segs: Iterator[Segment]) -> None:
        self.segs = segs
        self.seg: Segment | None = None
        self.k = 0
        self.key = b""
        self.heads: dict[str, _Heads] = {}
        self.mid = b""
        self.tail = b""


class MemberRenderer:
    """Renders member segments to records window by window (see the module docstring)."""

    def __init__(self, cfg: GeneratorConfig, cat: Catalog, serde: AvroSerde, topic_map: Mapping[str, str],
                 counts: dict[str, int], keep_source: bool = True) -> None:
        self.cfg = cfg
        # Records carry their segment only when something needs it (bad records, the max_events cut):
        # a tuple of only str/bytes/int/None is untracked by the cyclic GC after its first collection.
        self.keep_source = keep_source
        self.cat = cat
        self.serde = serde
        self.out = {t: topic_map.get(t, t) for t in (LOGIN, PLAYBACK, GAMING)}
        self.counts = counts
        self.end = cfg.start_ms + int(cfg.duration_s * 1000)
        self.codecs: dict[str, SessionCodec | None] = {}
        for topic in (PLAYBACK, GAMING):
            self.codecs[topic] = self._codec(topic)

    def _codec(self, topic: str) -> SessionCodec | None:
        # The schema the serde encodes with; the first-session check in _verify still compares the
        # spliced bytes with the serde's before any is produced.
        try:
            return SessionCodec(topic, self.serde.writer_schema(topic), frame_header(self.serde.schema_id(topic)))
        except (_Layout, ValueError) as exc:
            warnings.warn(f"{topic}: encoding event by event ({exc})", RuntimeWarning, stacklevel=2)
            return None

    def _start(self, cur: _Cursor, seg: Segment) -> None:
        cur.seg, cur.k = seg, 0
        if isinstance(seg, Session):
            codec = self.codecs[seg.topic]
            if codec is not None:
                heads = cur.heads.get(seg.topic)
                if heads is None:
                    heads = cur.heads[seg.topic] = codec.heads(seg.eid)
                cur.mid, cur.tail = codec.shared(seg)
                if not codec.verified:
                    self._verify(codec, seg, heads, cur.mid, cur.tail)

    def _verify(self, codec: SessionCodec, seg: Session, heads: _Heads, mid: bytes, tail: bytes) -> None:
        """The first session of a topic is rendered both ways; on any difference the serde encodes."""
        for k, ts in enumerate(seg.times(seg.stop + 1)):
            ev = seg.event_at(ts)
            assert ev.value is not None
            if codec.one(seg, heads, mid, tail, k, ts) != self.serde.encode(seg.topic, ev.value):
                warnings.warn(f"{seg.topic}: spliced bytes differ from the serde's; encoding event by event",
                              RuntimeWarning, stacklevel=2)
                self.codecs[seg.topic] = None
                return
        codec.verified = True

    def cursor(self, index: int) -> tuple[_Cursor, int | None]:
        """A member's cursor and its first event time (None: no events in the window)."""
        cur = _Cursor(member_segments(self.cfg, self.cat, index))
        seg = next(cur.segs, None)
        if seg is None:
            return cur, None
        cur.key = (seg.value["account_id"] if isinstance(seg, Login) else seg.base["account_id"]).encode()
        self._start(cur, seg)
        first = seg.t if isinstance(seg, Login) else seg.t0
        return cur, first if first < self.end else None

    def fill(self, cur: _Cursor, w1: int, buf: Batch) -> int | None:
        """Append the member's events before ``w1``; its next event time, or None when it has no more."""
        end = self.end
        lim = w1 if w1 < end else end
        counts = self.counts
        while True:
            seg = cur.seg
            if isinstance(seg, Login):
                if cur.k == 0:
                    if seg.t >= lim:
                        return seg.t
                    buf.append((self.out[LOGIN], self.serde.encode(LOGIN, seg.value), cur.key, seg.t, None,
                                seg if self.keep_source else None))
                    counts[LOGIN] += 1
                    cur.k = 1
            elif isinstance(seg, Session):
                nxt = self._session(cur, seg, lim, buf)
                if nxt is not None:
                    return nxt if nxt < end else None
            nseg = next(cur.segs, None)
            if nseg is None:
                return None
            self._start(cur, nseg)
            if (nseg.t if isinstance(nseg, Login) else nseg.t0) >= end:
                return None

    def _session(self, cur: _Cursor, seg: Session, lim: int, buf: Batch) -> int | None:
        """Append ``seg``'s events before ``lim``; the next event's time, or None when the session is done."""
        codec = self.codecs[seg.topic]
        out = self.out[seg.topic]
        key = cur.key
        src = seg if self.keep_source else None
        t0, hb, stop = seg.t0, seg.hb_ms, seg.stop
        n = seg.n_final
        k = cur.k
        before = len(buf)
        if codec is None:  # event by event through the serde
            times = seg.times(self.end)
            enc = self.serde.encode
            while k < len(times) and times[k] < lim:
                ev = seg.event_at(times[k])
                assert ev.value is not None
                buf.append((out, enc(seg.topic, ev.value), key, times[k], None, src))
                k += 1
            cur.k = k
            self.counts[seg.topic] += len(buf) - before
            return None if k >= len(times) else times[k]
        heads, mid, tail = cur.heads[seg.topic], cur.mid, cur.tail
        if k == 0:
            if t0 >= lim:
                return t0
            buf.append((out, codec.one(seg, heads, mid, tail, 0, t0), key, t0, None, src))
            k = 1
        if k < n:
            a = t0 + k * hb
            b = stop if stop < lim else lim
            if a < b:
                hbs = range(a, b, hb)
                s0 = seg.seq0 + k
                digits = map(_digits, range(s0, s0 + len(hbs)))
                beat = codec.actions["HEARTBEAT"]
                dpos = seg.pos0 - t0
                d0 = _digits(s0)
                if (_Z_LO <= 2 * a and 2 * b <= _Z_HI and (2 * a) >> 28 == (2 * hbs[-1]) >> 28
                        and len(d0) == len(_digits(s0 + len(hbs) - 1))
                        and (not codec.with_position or 1 << 14 <= 2 * (a + dpos) and 2 * (b + dpos) <= _ZP_HI)):
                    # The common case, and the hottest loop of `rdg generate`: within this run of
                    # heartbeats the event id's digit count and the time's top varint chunk do not
                    # change and the position takes exactly two chunks, so everything but the low time
                    # chunks, the digits and the position is one constant piece.
                    C, U, M = VARINT_CONT14, VARINT_LAST14, MASK14
                    pre = heads[len(d0)]
                    if codec.with_position:
                        mid_beat = U[(2 * a) >> 28] + mid + beat
                        buf += [(out, _join((pre, d, C[z & M], C[z >> 14 & M], mid_beat, C[zp & M], U[zp >> 14], tail)),
                                 key, ts, None, src)
                                for ts, z, zp, d in zip(hbs, range(2 * a, 2 * b, 2 * hb),
                                                        range(2 * (a + dpos), 2 * (b + dpos), 2 * hb), digits,
                                                        strict=True)]
                    else:
                        rest = U[(2 * a) >> 28] + mid + beat + tail
                        buf += [(out, _join((pre, d, C[z & M], C[z >> 14 & M], rest)), key, ts, None, src)
                                for ts, z, d in zip(hbs, range(2 * a, 2 * b, 2 * hb), digits, strict=True)]
                elif not (_Z_LO <= 2 * a and 2 * b <= _Z_HI and 0 <= 2 * (a + dpos) and 2 * (b + dpos) <= _ZP_HI):
                    # Times or positions outside the inlined varint ranges below: the general encoder.
                    if codec.with_position:
                        buf += [(out, _join((heads[len(d)], d, long_bytes(ts), mid, beat, long_bytes(ts + dpos), tail)),
                                 key, ts, None, src) for ts, d in zip(hbs, digits, strict=True)]
                    else:
                        buf += [(out, _join((heads[len(d)], d, long_bytes(ts), mid, beat, tail)), key, ts, None, src)
                                for ts, d in zip(hbs, digits, strict=True)]
                elif codec.with_position:
                    # The hottest loop of `rdg generate`: zigzag varints inlined as 14-bit table
                    # lookups (z = 2 * value for value >= 0; see avro.encoder.long_bytes), one join per record.
                    C, U, M = VARINT_CONT14, VARINT_LAST14, MASK14
                    buf += [(out, _join((heads[len(d)], d, C[z & M], C[z >> 14 & M], U[z >> 28], mid, beat,
                                         U[zp] if zp < 16384 else C[zp & M] + U[zp >> 14], tail)), key, ts, None, src)
                            for ts, z, zp, d in zip(hbs, range(2 * a, 2 * b, 2 * hb),
                                                    range(2 * (a + dpos), 2 * (b + dpos), 2 * hb), digits, strict=True)]
                else:
                    C, U, M = VARINT_CONT14, VARINT_LAST14, MASK14
                    buf += [(out, _join((heads[len(d)], d, C[z & M], C[z >> 14 & M], U[z >> 28], mid, beat, tail)),
                             key, ts, None, src) for ts, z, d in zip(hbs, range(2 * a, 2 * b, 2 * hb), digits,
                                                                    strict=True)]
                k += len(hbs)
        if k == n and stop < lim:
            buf.append((out, codec.one(seg, heads, mid, tail, n, stop), key, stop, None, src))
            k = n + 1
        cur.k = k
        self.counts[seg.topic] += len(buf) - before
        if k > n:
            return None
        return t0 + k * hb if k < n else stop

    def windows(self) -> Iterator[Batch]:
        """Every member event, a window of simulated time per batch, in stream order."""
        cfg = self.cfg
        start = cfg.start_ms
        width = max(1_000, _WINDOW_MS_X_MEMBERS // cfg.members)
        cursors: list[_Cursor] = []
        pending: dict[int, list[int]] = {}
        for i in range(cfg.members):
            cur, first = self.cursor(i)
            cursors.append(cur)
            if first is not None:
                pending.setdefault((first - start) // width, []).append(i)
        while pending:
            wi = min(pending)
            members = sorted(pending.pop(wi))
            w1 = start + (wi + 1) * width
            buf: Batch = []
            fill = self.fill
            with gc_paused():  # a window's tens of thousands of record tuples
                for i in members:
                    nxt = fill(cursors[i], w1, buf)
                    if nxt is not None:
                        pending.setdefault((nxt - start) // width, []).append(i)
                buf.sort(key=_by_time)  # stable: ties stay in member index order
            yield buf


# Framed with this id, a record points at no schema (ids are allocated upwards from 1).
UNKNOWN_SCHEMA_ID = 0x7FFFFFF0


class EventEncoder:
    """Turns an :class:`Event` into Kafka value bytes, including the deliberately bad ones."""

    def __init__(self, serde: AvroSerde) -> None:
        self.serde = serde
        self._wrong_id: dict[str, int] = {}

    def _other_subject_id(self, topic: str) -> int:
        """An id that IS registered, but for another subject (a catalog schema)."""
        sid = self._wrong_id.get(topic)
        if sid is None:
            own = self.serde.schema_id(topic)
            candidates = [self.serde.schema_id(t) for t in (*CATALOG_TOPICS, *MEMBER_TOPICS) if t != topic]
            sid = next(c for c in candidates if c != own)
            self._wrong_id[topic] = sid
        return sid

    def value(self, ev: Event) -> bytes:
        if ev.bad is None or ev.bad in VALUE_BAD_KINDS:
            assert ev.value is not None
            return self.serde.encode(ev.topic, ev.value)
        if ev.bad == "garbage":
            assert ev.raw is not None
            return ev.raw
        assert ev.value is not None
        good = self.serde.encode(ev.topic, ev.value)
        if ev.bad == "truncated_avro":
            body_len = len(good) - HEADER.size
            return good[: HEADER.size + body_len // 2]
        sid = self._other_subject_id(ev.topic) if ev.bad == "wrong_schema_id" else UNKNOWN_SCHEMA_ID
        return frame_header(sid) + good[HEADER.size:]


def encoded_batches(cfg: GeneratorConfig, serde: AvroSerde, counts: dict[str, int],
                    bad: dict[tuple[str, str], int], topic_map: Mapping[str, str] | None = None) -> Iterator[Batch]:
    """The records of :func:`~rdg_platform.generator.journeys.generate_events` ``(cfg)``, encoded with
    ``serde`` (header ids from its registry), in the same order, as batches of :data:`Record`.

    Good records are counted per logical topic into ``counts`` and bad ones per (topic, kind) into
    ``bad`` as their batch is yielded. ``topic_map`` sends a logical topic's records to another Kafka
    topic (the records keep the logical topic's schema).
    """
    tmap = dict(topic_map or {})
    encoder = EventEncoder(serde)
    cat = build_catalog(cfg)
    if cfg.include_catalog:
        batch: Batch = []
        for ev in cat.records:
            batch.append((tmap.get(ev.topic, ev.topic), encoder.value(ev), ev.key.encode(), ev.timestamp_ms, None, None))
            counts[ev.topic] += 1
        yield batch
    window_counts: dict[str, int] = {LOGIN: 0, PLAYBACK: 0, GAMING: 0}
    renderer = MemberRenderer(cfg, cat, serde, tmap, window_counts,
                              keep_source=cfg.bad_fraction > 0 or cfg.max_events is not None)
    remaining = cfg.max_events
    bad_rnd = random.Random(f"{cfg.seed}:bad")
    frac = cfg.bad_fraction
    for buf in renderer.windows():
        last = False
        if remaining is not None:
            if len(buf) >= remaining:
                for rec in buf[remaining:]:
                    assert rec[5] is not None
                    window_counts[rec[5].topic] -= 1
                del buf[remaining:]
                last = True
            remaining -= len(buf)
        for t, n in window_counts.items():
            counts[t] += n
            window_counts[t] = 0
        if frac > 0:
            buf = _with_bad(buf, bad_rnd, frac, encoder, tmap, bad)
        if buf:
            yield buf
        if last:
            return


def _with_bad(buf: Batch, rnd: random.Random, frac: float, encoder: EventEncoder, tmap: Mapping[str, str],
              bad: dict[tuple[str, str], int]) -> Batch:
    """``buf`` with a bad record after each good one with probability ``frac`` (the same draws as
    :func:`~rdg_platform.generator.journeys.generate_events`)."""
    out: Batch = []
    draw = rnd.random
    for rec in buf:
        out.append(rec)
        if draw() < frac:
            seg = rec[5]
            assert seg is not None
            ev = make_bad(seg.event_at(rec[3]), rnd)
            assert ev.bad is not None
            out.append((rec[0], encoder.value(ev), rec[2], rec[3], ev.headers, None))
            bad[(ev.topic, ev.bad)] += 1
    return out


# Records per message from the worker process: small enough that producing starts early and the two
# processes overlap, large enough that a message costs little next to its records.
_CHUNK = 4096


def can_fork_worker(min_cores: int = 2) -> bool:
    """Whether a worker process can help: cores to spare, and fork to start it (no re-import)."""
    return (os.cpu_count() or 1) >= min_cores and "fork" in multiprocessing.get_all_start_methods()


def worker_batches(cfg: GeneratorConfig, serde: AvroSerde, counts: dict[str, int], bad: dict[tuple[str, str], int],
                   topic_map: Mapping[str, str] | None = None) -> Iterator[Batch]:
    """:func:`encoded_batches`, computed in a forked worker process and streamed back pickled.

    Why: generating and encoding cost about as much CPU per record as ``Producer.produce`` itself, so
    on a machine with a second core the generator pipelines the two (the parent only unpickles and
    produces). The records and their order are exactly :func:`encoded_batches`'s (the worker runs
    it); ``counts`` and ``bad`` are filled when the worker is done. Fork, not spawn: the worker must
    start in milliseconds and inherit the serde's resolved schema ids (it makes no registry calls;
    they are resolved here first). The worker never touches the parent's Kafka producer and leaves
    with ``os._exit`` (multiprocessing's fork start method), so librdkafka's threads, which a fork
    does not copy, are never waited for.
    """
    for topic in (*CATALOG_TOPICS, *MEMBER_TOPICS):
        serde.schema_id(topic)
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(cfg, serde, dict(topic_map or {}), send), daemon=True,
                       name="rdg-generate-worker")
    # Python's advice for fork without exec: frozen, the parent's objects are not visited by the
    # worker's collections, so the worker does not copy-on-write the parent's whole heap.
    gc.freeze()
    try:
        proc.start()
    finally:
        gc.unfreeze()
    send.close()
    loads = pickle.loads
    try:
        while True:
            try:
                msg = loads(recv.recv_bytes())
            except EOFError:
                raise RuntimeError(f"generator worker exited with code {proc.exitcode} before finishing") from None
            if isinstance(msg, list):
                yield msg
                continue
            kind, a, b = msg
            if kind == "error":
                raise RuntimeError(f"generator worker failed: {a}")
            for t, n in a.items():
                counts[t] += n
            for tk, n in b.items():
                bad[tk] += n
            return
    finally:
        recv.close()
        if proc.is_alive():
            proc.terminate()
        proc.join()


def _worker(cfg: GeneratorConfig, serde: AvroSerde, topic_map: dict[str, str], conn: Connection) -> None:
    """The worker process: encoded_batches' records in chunks (without their source segments), then
    the counts; or the error."""
    counts: Counter[str] = Counter()
    bad: Counter[tuple[str, str]] = Counter()
    dumps, send = pickle.dumps, conn.send_bytes
    try:
        for batch in encoded_batches(cfg, serde, counts, bad, topic_map):
            for i in range(0, len(batch), _CHUNK):
                send(dumps([(t, v, k, ts, h, None) for t, v, k, ts, h, _s in batch[i:i + _CHUNK]], 5))
        send(dumps(("done", dict(counts), dict(bad)), 5))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        send(dumps(("error", f"{type(exc).__name__}: {exc}", None), 5))
    finally:
        conn.close()
