"""Credentials of the local services, generated once per state directory.

Security is on by default locally too, so every test and the demo run with it. Each role below gets
its own Kafka SCRAM principal, Cassandra role and API token, with random secrets stored in
``$RDG_STATE_DIR/secrets/credentials.json`` (directory 0700, file 0600). They are never committed, never
logged and never shown by ``rdg config show``; ``rdg env --role <role>`` prints one role's settings for
``eval`` in a shell.

Roles (least privilege; what each may do is enforced by the servers, see ``kafka_acls`` and the
Cassandra grants):
- ``upstream``: a producing service: writes the source topics, uses the registry.
- ``app``: the processors and sinks: read source/catalog/graph topics, write graph and DLQ topics,
  write the graph tables.
- ``reader``: the graph API's read path and query clients: read the graph tables, ``read`` API scope.
- ``admin``: DDL, maintenance, rebuilds, erasure and topic admin; ``admin`` API scope.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from rdg_platform.settings import Settings

Role = Literal["upstream", "app", "reader", "admin"]
ROLES: tuple[Role, ...] = ("upstream", "app", "reader", "admin")

# Principal / role names per platform role (Kafka SCRAM user = Cassandra role name).
PRINCIPALS: dict[Role, str] = {"upstream": "rdg_upstream", "app": "rdg_app", "reader": "rdg_reader",
                               "admin": "rdg_admin"}
BROKER_PRINCIPAL = "rdg_broker"  # the broker's own identity (inter-broker and controller traffic)
API_SCOPES: dict[str, tuple[str, ...]] = {"reader": ("read",), "admin": ("read", "admin")}
# Roles that write the graph (sinks, backfills, rebuilds, erasures) and so check the erasure fence.
FENCE_ROLES: frozenset[Role] = frozenset({"app", "admin"})


@dataclass(frozen=True)
class LocalCredentials:
    """All local secrets: one password per role (Kafka and Cassandra), the broker's, the Cassandra
    superuser's replacement password, one API token per API role, the page-token signing key and the
    erasure fence's HMAC key."""

    passwords: dict[str, str]
    broker_password: str
    cassandra_superuser_password: str
    api_tokens: dict[str, str]
    page_token_key: str
    fence_key: str = ""

    def password(self, role: Role) -> str:
        return self.passwords[role]


def secrets_dir(state_dir: Path) -> Path:
    return state_dir / "secrets"


def credentials_file(state_dir: Path) -> Path:
    return secrets_dir(state_dir) / "credentials.json"


def _new() -> LocalCredentials:
    def pw() -> str:
        return secrets.token_urlsafe(24)

    return LocalCredentials(
        passwords={r: pw() for r in ROLES}, broker_password=pw(), cassandra_superuser_password=pw(),
        api_tokens={r: "rdg_" + secrets.token_urlsafe(32) for r in API_SCOPES},
        page_token_key=secrets.token_urlsafe(32), fence_key=secrets.token_urlsafe(32))


def load_or_create(state_dir: Path) -> LocalCredentials:
    """The state directory's credentials, created (atomically, 0600) on first use."""
    path = credentials_file(state_dir)
    if not path.exists():
        d = secrets_dir(state_dir)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(_new()), fh)
        try:
            os.link(tmp, path)  # first writer wins if two processes race
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    raw = json.loads(path.read_text())
    if not raw.get("fence_key"):
        # A state dir from before the fence: derive its key from a secret every process already shares,
        # so they all agree without rewriting the file (no race between processes).
        raw["fence_key"] = hashlib.sha256(("rdg-erasure-fence:" + raw["page_token_key"]).encode()).hexdigest()
    return LocalCredentials(**raw)


def token_hash(token: str) -> str:
    """How the API stores a bearer token: its SHA-256, hex (tokens are random, so no salt is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def local_api_settings(settings: Settings) -> Settings:
    """``settings`` for the graph API server, with the local credentials' token hashes and page-token
    key filled in where the settings carry none (``rdg serve``, the demo and tests)."""
    creds = load_or_create(settings.state_dir)
    a = settings.api
    update: dict[str, object] = {}
    if a.tokens is None:
        update["tokens"] = {token_hash(t): list(API_SCOPES[r]) for r, t in creds.api_tokens.items()
                            if r in API_SCOPES}
    if a.page_token_key is None:
        update["page_token_key"] = SecretStr(creds.page_token_key)
    return settings.model_copy(update={"api": a.model_copy(update=update)}) if update else settings


def switch_role(settings: Settings, role: Role) -> Settings:
    """The same local services, acting as another role: the credentials ``settings`` carry are replaced
    by the local credentials of ``role`` (a local launcher starting apps as ``app`` from an ``admin``
    process, tests of least privilege)."""
    base = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={"sasl_username": None, "sasl_password": None}),
        "cassandra": settings.cassandra.model_copy(update={"username": None, "password": None}),
        "api": settings.api.model_copy(update={"token": None}),
        "erasure": settings.erasure.model_copy(update={"fence_key": None})})
    return local_role_settings(base, role)


def local_role_settings(settings: Settings, role: Role) -> Settings:
    """``settings`` acting as ``role`` against the local services: credentials that the settings do
    not already carry (from the environment or RDG_CONFIG) are filled from the state directory's
    credentials. Entry points call this for the role they run as (``rdg generate``: upstream, the
    apps: app, ``rdg query``/``rdg serve``: reader, ``rdg topics``/Dagster: admin)."""
    creds = load_or_create(settings.state_dir)
    user, password = PRINCIPALS[role], SecretStr(creds.password(role))
    k, c, a, e = settings.kafka, settings.cassandra, settings.api, settings.erasure
    if role in FENCE_ROLES and e.fence_key is None:
        e = e.model_copy(update={"fence_key": SecretStr(creds.fence_key)})
    if not k.sasl_username:
        k = k.model_copy(update={"sasl_username": user, "sasl_password": password})
    if not c.username:
        c = c.model_copy(update={"username": user, "password": password})
    token = creds.api_tokens.get(role)
    if not a.token and token is not None:
        a = a.model_copy(update={"token": SecretStr(token)})
    return settings.model_copy(update={"kafka": k, "cassandra": c, "api": a, "erasure": e})
