"""The lakehouse: Kafka topics archived hourly to Iceberg, and what is done with that history.

Pure (non-Dagster) code, wrapped by ``rdg_platform.assets.{archive,backfill,rebuild,maintenance}``:
catalog config shared by pyiceberg, Spark and dbt (:mod:`.catalog`), Avro -> Iceberg schemas
(:mod:`.schema`), exact hour-window Kafka reads (:mod:`.kafka_window`), the idempotent archive writer
(:mod:`.archive`), backfill through the streaming mapping (:mod:`.backfill`), the Spark rebuild of a
namespace (:mod:`.spark`) and table maintenance (:mod:`.maintenance`). Per-property last-write-wins is
:mod:`rdg_platform.model.lww`, shared with the streaming dedup window.
"""

from rdg_platform.lakehouse.archive import (
    ArchiveResult,
    archive_identifier,
    archive_records,
    archive_window,
    read_archive,
)
from rdg_platform.lakehouse.catalog import ARCHIVE_NAMESPACE, DEFAULT_CATALOG_NAME, CatalogConfig
from rdg_platform.lakehouse.kafka_window import KafkaReadError, WindowRead, hour_window, read_window

__all__ = [
    "ARCHIVE_NAMESPACE", "DEFAULT_CATALOG_NAME", "ArchiveResult", "CatalogConfig", "KafkaReadError",
    "WindowRead", "archive_identifier", "archive_records", "archive_window", "hour_window", "read_archive",
    "read_window",
]
