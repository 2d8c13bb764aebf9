"""``rdg generate``: deterministic, realistic member journeys into the source topics.

The pure part (:mod:`rdg_platform.generator.journeys`: ``generate_events(config) -> Iterator[Event]``)
is separate from the Kafka part (:mod:`rdg_platform.generator.producer`) so tests, benchmarks and other
components can reuse the exact same stream without a broker.
"""

from __future__ import annotations

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
    EventEncoder,
    ProduceError,
    ProduceSummary,
    make_producer,
    make_progress,
    produce_batches,
    produce_events,
    produce_generated,
    producer_config,
)
from rdg_platform.serde import AvroSerde


def run_generator(cfg: GeneratorConfig, bootstrap: str, registry_url: str, *, rate: float = 0.0,
                  quiet: bool = True, track_offsets: bool = False) -> ProduceSummary:
    """Register the schemas, generate ``cfg``'s events and produce them; returns the summary."""
    from rdg_platform.model.spec import default_spec

    with AvroSerde(registry_url) as serde:
        serde.register_all(default_spec())
        producer, tracker = make_producer(bootstrap, track_offsets=track_offsets)
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
