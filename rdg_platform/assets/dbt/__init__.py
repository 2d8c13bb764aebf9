"""dbt analytics over the Iceberg archive, as Dagster assets (dagster-dbt).

The dbt project lives in ``dbt/`` at the repository root (``RDG_DBT_PROJECT_DIR`` moves it) and runs on
dbt-duckdb, reading the archive through dbt-duckdb's ``iceberg`` plugin (pyiceberg -> Arrow -> DuckDB;
no DuckDB extension is downloaded). Its sources ``archive.member_*`` map to the archive assets' keys
(``archive/<table>``), so the models are downstream of the archive in the asset graph; models are keyed
``analytics/<model>`` in group ``dbt``.

The manifest follows dagster-dbt's :class:`DbtProject` lifecycle: under ``dagster dev`` (``rdg ui``)
``prepare_if_dev()`` re-parses the project at load; elsewhere the manifest is a build artefact (the
image build runs ``dbt parse``; tests and benchmarks call :func:`prepare`), and loading the
definitions without it fails with a message saying so. The catalog reaches dbt as ``--vars`` on each
invocation (see ``dbt/profiles.yml``), never through the environment.
"""

import json
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, Definitions
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from rdg_platform.resources import ICEBERG, IcebergCatalogResource, PlatformResources, platform_resources
from rdg_platform.settings import Settings

GROUP = "dbt"
RESOURCE_KEY = "dbt"
DEFAULT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt"


class DbtManifestMissingError(RuntimeError):
    """The dbt manifest has not been built (outside ``dagster dev`` it is a build step)."""


def dbt_project(settings: Settings) -> DbtProject:
    return DbtProject(project_dir=settings.dbt_project_dir or DEFAULT_PROJECT_DIR)


def dbt_executable() -> str:
    """The ``dbt`` next to this interpreter (a venv not on PATH), else the one on PATH."""
    local = Path(sys.executable).parent / "dbt"
    return str(local) if local.exists() else (shutil.which("dbt") or "dbt")


def dbt_resource(project: DbtProject) -> DbtCliResource:
    return DbtCliResource(project_dir=project, dbt_executable=dbt_executable())


def prepare(project: DbtProject) -> Path:
    """Build the manifest (``dbt parse``: no connection, no download) - the build step for tests,
    benchmarks and images; ``dagster dev`` does the same through ``prepare_if_dev``."""
    dbt_resource(project).cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return project.manifest_path


def dbt_vars(iceberg: IcebergCatalogResource, duckdb_dir: Path) -> dict[str, str]:
    """The dbt ``--vars`` of a run: the same Iceberg catalog as the rest of the platform, and where
    DuckDB keeps the models."""
    cfg = iceberg.config()
    return {"rdg_iceberg_uri": cfg.sqlalchemy_uri(), "rdg_iceberg_warehouse": cfg.warehouse,
            "rdg_iceberg_catalog": cfg.name, "rdg_duckdb_path": str(duckdb_dir / "rdg_analytics.duckdb"),
            "rdg_extension_dir": str(duckdb_dir / "duckdb_extensions")}


class RdgDbtTranslator(DagsterDbtTranslator):
    """Sources keep dagster-dbt's ``[source, table]`` key (= the archive assets' ``archive/<table>``);
    models get ``analytics/<model>`` and the ``dbt`` group."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props.get("resource_type") == "source":
            return super().get_asset_key(dbt_resource_props)
        return AssetKey(["analytics", dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return GROUP


def build_dbt_assets(project: DbtProject, duckdb_dir: Path) -> AssetsDefinition:
    """The analytics models of ``project`` as one dbt multi-asset (needs its manifest)."""
    if not project.manifest_path.exists():
        raise DbtManifestMissingError(
            f"dbt manifest {project.manifest_path} not built: run `dbt parse` in {project.project_dir} (the image "
            "build does), or rdg_platform.assets.dbt.prepare(); `rdg ui` (dagster dev) builds it itself")

    @dbt_assets(manifest=project.manifest_path, project=project, dagster_dbt_translator=RdgDbtTranslator(),
                name="rdg_analytics_dbt")
    def rdg_analytics_dbt(context: AssetExecutionContext, dbt: DbtCliResource,
                          iceberg: IcebergCatalogResource) -> Iterator[Any]:
        """Build (run + test) the analytics models over the current archive."""
        duckdb_dir.mkdir(parents=True, exist_ok=True)
        yield from dbt.cli(["build", "--vars", json.dumps(dbt_vars(iceberg, duckdb_dir))], context=context).stream()

    return rdg_analytics_dbt


def defs(settings: Settings, resources: PlatformResources | None = None) -> Definitions:
    """The dbt domain: the analytics models, downstream of the archive."""
    res = resources if resources is not None else platform_resources(settings)
    project = dbt_project(settings)
    project.prepare_if_dev()
    return Definitions(assets=[build_dbt_assets(project, settings.state_dir / "dbt")],
                       resources={**res.select(ICEBERG), RESOURCE_KEY: dbt_resource(project)})
