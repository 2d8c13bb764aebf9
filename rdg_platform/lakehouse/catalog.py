"""The Iceberg catalog shared by pyiceberg (Dagster assets) and Spark (rebuild job).

One SQL database holds the catalog: pyiceberg's ``SqlCatalog`` and Iceberg-Java's ``JdbcCatalog`` use
the same two tables (``iceberg_tables`` with the v1 ``iceberg_type`` column, and
``iceberg_namespace_properties``) keyed by the same catalog name, so a table written by one is read
by the other. SQLite under the state directory by default (no server to run); Postgres in
production by configuration. The warehouse is a local directory by default, an object store
(``s3://...`` plus ``s3.*`` properties) by configuration.

The Postgres setting is tested against a real PostgreSQL (``tests/integration/test_lakehouse_assets.py``):
psycopg2 (the ``pyiceberg[sql-postgres]`` extra) and ``org.postgresql:postgresql`` for Spark are part
of the install. An ``s3://`` warehouse is set with the explicit ``s3_*`` fields of :class:`CatalogConfig`,
which become pyiceberg's pyarrow FileIO properties and Iceberg-Java's S3FileIO properties (Spark gets
``org.apache.iceberg:iceberg-aws-bundle``); it is tested end to end against a local S3Proxy
(``tests/integration/test_s3_warehouse.py``).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pyiceberg.catalog.sql import SqlCatalog

DEFAULT_CATALOG_NAME = "rdg"
ARCHIVE_NAMESPACE = "archive"


@dataclass(frozen=True)
class CatalogConfig:
    """Where the catalog database and the warehouse live.

    ``uri`` is a SQLAlchemy URL (``sqlite:////abs/path.db`` or ``postgresql+psycopg2://host/db``);
    credentials go in ``user``/``password`` rather than the URL so they can come from secrets.
    ``properties`` are passed through to pyiceberg and Spark as they are. An ``s3://`` warehouse takes
    its object store from the ``s3_*`` fields (``None`` = the client's default: AWS's endpoint and
    credential chain); they are translated per engine by :meth:`s3_properties`, because pyiceberg and
    Iceberg-Java spell region and addressing style differently. ``s3_region`` should always be set for
    a non-AWS endpoint: without it pyiceberg asks AWS for the bucket's region.
    """

    name: str
    uri: str
    warehouse: str
    user: str | None = None
    password: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    s3_endpoint: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_region: str | None = None
    s3_path_style_access: bool | None = None

    @classmethod
    def local(cls, base_dir: Path, name: str = DEFAULT_CATALOG_NAME) -> CatalogConfig:
        """SQLite catalog + file warehouse under ``base_dir`` (the platform's: ``<state_dir>/iceberg``)."""
        base = base_dir.resolve()
        return cls(name=name, uri=f"sqlite:///{base / 'catalog.db'}", warehouse=(base / "warehouse").as_uri())

    @property
    def is_sqlite(self) -> bool:
        return self.uri.startswith("sqlite")

    def sqlalchemy_uri(self) -> str:
        """The URI pyiceberg connects with, credentials filled in for server databases."""
        if self.is_sqlite or not self.user:
            return self.uri
        parts = urlsplit(self.uri)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        auth = self.user if self.password is None else f"{self.user}:{self.password}"
        return f"{parts.scheme}://{auth}@{host}{port}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    def jdbc_uri(self) -> str:
        """The same database as a JDBC URL for Iceberg's JdbcCatalog in Spark."""
        parts = urlsplit(self.uri)
        scheme = parts.scheme.split("+", 1)[0]
        if scheme == "sqlite":
            # sqlite:////abs/path.db -> path "//abs/path.db"; sqlite:///rel.db -> "/rel.db"
            path = unquote(self.uri.split(":///", 1)[1]) if ":///" in self.uri else ""
            if not path:
                raise ValueError(f"in-memory SQLite catalog {self.uri!r} cannot be shared with Spark")
            return f"jdbc:sqlite:{path}"
        if scheme in ("postgresql", "postgres"):
            port = f":{parts.port}" if parts.port else ""
            return f"jdbc:postgresql://{parts.hostname}{port}{parts.path}"
        raise ValueError(f"unsupported catalog database {scheme!r} (sqlite or postgresql)")

    def s3_properties(self, java: bool = False) -> dict[str, str]:
        """The ``s3_*`` fields as FileIO properties: pyiceberg's pyarrow FileIO, or (``java``) S3FileIO.

        Both read ``s3.endpoint``/``s3.access-key-id``/``s3.secret-access-key``; the region is
        ``s3.region`` for pyiceberg and ``client.region`` for Iceberg-Java; path-style addressing
        (needed by S3Proxy and most self-hosted stores) is ``s3.path-style-access=true`` in Java and
        ``s3.force-virtual-addressing=false`` in pyiceberg.
        """
        props: dict[str, str] = {}
        if self.s3_endpoint:
            props["s3.endpoint"] = self.s3_endpoint
        if self.s3_access_key_id:
            props["s3.access-key-id"] = self.s3_access_key_id
        if self.s3_secret_access_key is not None:
            props["s3.secret-access-key"] = self.s3_secret_access_key
        if self.s3_region:
            props["client.region" if java else "s3.region"] = self.s3_region
        if self.s3_path_style_access is not None:
            if java:
                props["s3.path-style-access"] = str(self.s3_path_style_access).lower()
            else:
                props["s3.force-virtual-addressing"] = str(not self.s3_path_style_access).lower()
        return props

    def pyiceberg_properties(self) -> dict[str, str]:
        props = {"uri": self.sqlalchemy_uri(), "warehouse": self.warehouse}
        props.update(self.properties)
        props.update(self.s3_properties())
        return props

    def spark_conf(self) -> dict[str, str]:
        """``spark.sql.catalog.<name>.*`` settings that point Spark at this same catalog."""
        p = f"spark.sql.catalog.{self.name}"
        conf = {
            p: "org.apache.iceberg.spark.SparkCatalog",
            f"{p}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
            f"{p}.uri": self.jdbc_uri(),
            f"{p}.warehouse": self.warehouse,
            # pyiceberg creates the v1 layout (with iceberg_type); tell JdbcCatalog to use it too.
            f"{p}.jdbc.schema-version": "V1",
        }
        if self.user:
            conf[f"{p}.jdbc.user"] = self.user
        if self.password is not None:
            conf[f"{p}.jdbc.password"] = self.password
        for k, v in {**self.properties, **self.s3_properties(java=True)}.items():
            if k.startswith("s3."):
                conf[f"{p}.io-impl"] = "org.apache.iceberg.aws.s3.S3FileIO"
            conf[f"{p}.{k}"] = v
        return conf

    def load(self) -> SqlCatalog:
        """Open the catalog (creating its tables and, for local setups, its directories)."""
        if self.is_sqlite and ":///" in self.uri:
            db = Path(unquote(self.uri.split(":///", 1)[1]))
            db.parent.mkdir(parents=True, exist_ok=True)
            _sqlite_wal(db)
        if self.warehouse.startswith("file:"):
            Path(unquote(urlsplit(self.warehouse).path)).mkdir(parents=True, exist_ok=True)
        return SqlCatalog(self.name, **self.pyiceberg_properties())


def _sqlite_wal(db: Path) -> None:
    """Put the SQLite catalog in WAL mode (persistent in the file): Spark's JdbcCatalog may keep a
    read transaction open on its pooled connection, and in the default rollback-journal mode that
    blocks every pyiceberg commit ("database is locked"); in WAL mode readers never block the writer."""
    con = sqlite3.connect(db, timeout=30)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()
