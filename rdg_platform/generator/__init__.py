"""``rdg generate``: deterministic, realistic member journeys into the source topics.

The pure part (:mod:`rdg_platform.generator.journeys`: ``generate_events(config) -> Iterator[Event]``)
is separate from the Kafka part (:mod:`rdg_platform.generator.producer`) so tests, benchmarks and other
components can reuse the exact same stream without a broker. :mod:`rdg_platform.generator.render`
renders that same stream straight to encoded Kafka records, which is what ``rdg generate`` sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rdg_platform.generator.journeys import (
    BAD_HEADER,
    BAD_KINDS,
    EXPECTED_REASON,
    MEMBER_TOPICS,
    BadKind,
    Event,
    GeneratorConfig,
    build_catalog,
    generate_events,
    make_member,
    member_stream,
)
from rdg_platform.generator.producer import (
    DeliveryTracker,
    ProduceError,
    ProduceSummary,
    make_producer,
    make_progress,
    produce_batches,
    produce_events,
    produce_generated,
    producer_config,
)
from rdg_platform.generator.render import EventEncoder

if TYPE_CHECKING:
    from rdg_platform.settings import Settings


def run_generator(cfg: GeneratorConfig, settings: Settings, *, rate: float = 0.0,
                  quiet: bool = True, track_offsets: bool = False) -> ProduceSummary:
    """Register the source schemas of ``settings``' spec (with the registry of ``settings.registry``),
    generate ``cfg``'s events and produce them to ``settings.kafka``; returns the summary."""
    from rdg_platform.avro.serde import AvroSerde

    with AvroSerde.from_settings(settings.registry) as serde:
        serde.register_all(settings.load_spec())
        producer, tracker = make_producer(settings.kafka, track_offsets=track_offsets)
        total = None
        if cfg.max_events is not None:
            total = cfg.max_events + (cfg.titles + cfg.games if cfg.include_catalog else 0)
        progress, close = make_progress(quiet, total)
        try:
            return produce_generated(cfg, producer, tracker, serde, rate=rate, progress=progress)
        finally:
            close()


__all__ = [
    "BAD_HEADER", "BAD_KINDS", "EXPECTED_REASON", "MEMBER_TOPICS", "BadKind", "DeliveryTracker", "Event", "EventEncoder",
    "GeneratorConfig", "ProduceError", "ProduceSummary", "build_catalog", "generate_events", "make_member",
    "make_producer", "make_progress", "member_stream", "produce_batches", "produce_events", "produce_generated",
    "producer_config", "run_generator",
]
