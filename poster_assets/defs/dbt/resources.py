"""The dbt CLI resource, running the venv's own ``dbt`` on the project in ``dbt/``."""

import importlib.metadata
from functools import cached_property

import dagster as dg
from dagster_dbt import DbtCliResource
from packaging import version

from poster_assets.defs.dbt.project import dbt_executable, poster_dbt_project


class PosterDbtCli(DbtCliResource):
    """``DbtCliResource`` without the seconds dagster-dbt spends before each build on what
    ``sql_models`` does not use: a ``dbt --version`` process (dbt's imports, only to read the
    version of the venv's own dbt-core, which this process has imported already) and a dbt
    adapter opened in this process (it serves ``fetch_row_counts`` / ``fetch_column_metadata``;
    ``sql_models`` reads row counts and column types from DuckDB itself). Both override
    dagster-dbt internals: should they be renamed, the build only gets slower again."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args):  # noqa: ANN001, ANN202 - dagster-dbt's signature
        return None


@dg.definitions
def dbt_resources() -> dg.Definitions:
    return dg.Definitions(
        resources={"dbt": PosterDbtCli(project_dir=poster_dbt_project, dbt_executable=dbt_executable())}
    )
