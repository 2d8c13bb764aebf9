"""dbt analytics over the Iceberg archive, as Dagster assets (dagster-dbt).

The dbt project lives in ``dbt/`` at the repository root (override: ``RDG_DBT_PROJECT_DIR``) and runs
on dbt-duckdb, reading the archive through dbt-duckdb's ``iceberg`` plugin (pyiceberg -> Arrow ->
DuckDB; no DuckDB extension is downloaded). Its sources ``archive.member_*`` map to the archive
assets' keys (``archive/<table>``), so the models are downstream of the archive in the asset graph;
models are keyed ``analytics/<model>`` in group ``dbt``. The manifest is prepared (``dbt parse``) at
definition load when missing or older than the project's files.
"""


import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from rdg_platform.resources import IcebergCatalogResource

GROUP = "dbt"
RESOURCE_KEY = "dbt"


def dbt_project_dir() -> Path:
    env = os.environ.get("RDG_DBT_PROJECT_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "dbt"


def _newest_source_mtime(project_dir: Path) -> float:
    files = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for sub in ("models", "macros", "tests"):
        files += [p for p in (project_dir / sub).rglob("*") if p.is_file()]
    return max((p.stat().st_mtime for p in files if p.exists()), default=0.0)


def dbt_executable() -> str:
    """The ``dbt`` next to this interpreter (a venv not on PATH), else the one on PATH."""
    local = Path(sys.executable).parent / "dbt"
    return str(local) if local.exists() else (shutil.which("dbt") or "dbt")


def prepare_project(project: DbtProject) -> Path:
    """Ensure ``project.manifest_path`` exists and is newer than every model/macro/config file
    (``dbt parse``: no database connection, no package download - the project has no packages)."""
    mp = project.manifest_path
    if not mp.exists() or mp.stat().st_mtime < _newest_source_mtime(project.project_dir):
        (DbtCliResource(project_dir=project, dbt_executable=dbt_executable())
         .cli(["parse", "--quiet"], target_path=project.target_path).wait())
    return mp


class RdgDbtTranslator(DagsterDbtTranslator):
    """Sources keep dagster-dbt's ``[source, table]`` key (= the archive assets' ``archive/<table>``);
    models get ``analytics/<model>`` and the ``dbt`` group."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props.get("resource_type") == "source":
            return super().get_asset_key(dbt_resource_props)
        return AssetKey(["analytics", dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return GROUP


rdg_dbt_project = DbtProject(project_dir=dbt_project_dir())
prepare_project(rdg_dbt_project)


def dbt_env(iceberg: IcebergCatalogResource) -> dict[str, str]:
    """Environment for the dbt profile: the same Iceberg catalog as the rest of the platform."""
    cfg = iceberg.config()
    return {"RDG_DBT_ICEBERG_URI": cfg.sqlalchemy_uri(), "RDG_DBT_ICEBERG_WAREHOUSE": cfg.warehouse,
            "RDG_DBT_ICEBERG_CATALOG": cfg.name, **{f"RDG_DBT_ICEBERG_{k.upper().replace('.', '_')}": v
                                                     for k, v in cfg.properties.items()}}


@dbt_assets(manifest=rdg_dbt_project.manifest_path, project=rdg_dbt_project,
            dagster_dbt_translator=RdgDbtTranslator(), name="rdg_analytics_dbt")
def rdg_analytics_dbt(context: AssetExecutionContext, dbt: DbtCliResource,
                      iceberg: IcebergCatalogResource) -> Iterator[Any]:
    """Build (run + test) the analytics models over the current archive."""
    os.environ.update(dbt_env(iceberg))  # this run's process only; dbt inherits it
    yield from dbt.cli(["build"], context=context).stream()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=rdg_dbt_project, dbt_executable=dbt_executable())


assets: list[Any] = [rdg_analytics_dbt]
asset_checks: list[Any] = []
jobs: list[Any] = []
schedules: list[Any] = []
sensors: list[Any] = []
