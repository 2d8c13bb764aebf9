"""The schema registry calls of the platform, over confluent-kafka's ``SchemaRegistryClient``.

Any Confluent-compatible registry works; locally it is Apicurio's ``ccompat/v7`` API. Subjects follow
the TopicNameStrategy (``<topic>-value``), and a schema is registered as the exact text
:func:`canonical_schema_text` gives, so every process registers byte-identical content and the
registry returns the existing id instead of a new version.

Only the client is used, not confluent-kafka's ``AvroSerializer``: its default schema lookup posts the
parsed, re-serialised schema, which Apicurio does not match to the registered text, and encoding goes
through :mod:`rdg_platform.avro.encoder` anyway. "Not found" is an answer here (``None`` or an empty
set); every other failure, including an unreachable registry, is a :class:`RegistryError`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from rdg_platform.avro.errors import RegistryError
from rdg_platform.settings import RegistrySettings

with warnings.catch_warnings(record=True) as _caught:
    # The client's optional OAuth support imports authlib's httpx integration, which announces its own
    # deprecation on import (with an "always" filter of its own, so only recording keeps it quiet);
    # nothing here uses it. Any other warning is passed on.
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
for _w in _caught:
    if "httpx module is deprecated" not in str(_w.message):
        warnings.warn_explicit(_w.message, _w.category, _w.filename, _w.lineno)


def subject_for(topic: str) -> str:
    """TopicNameStrategy subject of a topic's values."""
    return f"{topic}-value"


def canonical_schema_text(schema: Mapping[str, Any]) -> str:
    """The exact text registered for a schema: ``json.dumps`` of the parsed .avsc."""
    return json.dumps(schema)


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as the registry holds it: its id, type (``AVRO``, ...) and text."""

    schema_id: int
    schema_type: str
    text: str


class SchemaRegistry:
    """Register and look up schemas by subject and id; ``SchemaRegistryClient`` caches ids and schemas.

    ``username``/``password`` are sent as HTTP basic auth when both are set.
    """

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        conf: dict[str, Any] = {"url": self.url, "timeout": timeout_s, "max.retries": 2, "retries.wait.ms": 200}
        if username and password:
            conf["basic.auth.user.info"] = f"{username}:{password}"
        self._client = SchemaRegistryClient(conf)

    @classmethod
    def from_settings(cls, registry: RegistrySettings, *, timeout_s: float = 10.0) -> SchemaRegistry:
        """The registry at ``registry.base_url`` with its credentials."""
        password = registry.password.get_secret_value() if registry.password is not None else None
        return cls(registry.base_url, username=registry.username, password=password, timeout_s=timeout_s)

    def close(self) -> None:
        self._client.__exit__()

    def _fail(self, what: str, exc: Exception) -> RegistryError:
        if isinstance(exc, httpx.HTTPError):
            return RegistryError(f"schema registry at {self.url} unreachable ({what}): {exc}")
        return RegistryError(f"schema registry at {self.url}: {what}: {exc}")

    def register(self, topic: str, schema: Mapping[str, Any]) -> int:
        """Register ``schema`` under ``<topic>-value`` and return its id (idempotent)."""
        subject = subject_for(topic)
        try:
            return int(self._client.register_schema(subject, Schema(canonical_schema_text(schema), "AVRO")))
        except (SchemaRegistryError, httpx.HTTPError) as exc:
            raise self._fail(f"registering {subject}", exc) from exc

    def by_id(self, schema_id: int) -> RegisteredSchema | None:
        """The schema registered under ``schema_id``, or None if there is none."""
        try:
            s = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise self._fail(f"schema id {schema_id}", exc) from exc
        except httpx.HTTPError as exc:
            raise self._fail(f"schema id {schema_id}", exc) from exc
        return RegisteredSchema(schema_id, s.schema_type or "AVRO", s.schema_str or "")

    def subject_ids(self, topic: str) -> frozenset[int]:
        """The ids of every version registered under ``<topic>-value`` (empty if the subject is unknown)."""
        subject = subject_for(topic)
        try:
            versions = self._client.get_versions(subject)
            return frozenset(int(self._client.get_version(subject, v).schema_id) for v in versions)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return frozenset()
            raise self._fail(f"versions of {subject}", exc) from exc
        except httpx.HTTPError as exc:
            raise self._fail(f"versions of {subject}", exc) from exc

    def latest(self, topic: str) -> RegisteredSchema | None:
        """The latest schema registered under ``<topic>-value``, or None if there is none."""
        subject = subject_for(topic)
        try:
            r = self._client.get_latest_version(subject)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise self._fail(f"latest version of {subject}", exc) from exc
        except httpx.HTTPError as exc:
            raise self._fail(f"latest version of {subject}", exc) from exc
        return RegisteredSchema(int(r.schema_id), r.schema.schema_type or "AVRO", r.schema.schema_str or "")
