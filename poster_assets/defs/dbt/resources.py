"""The dbt CLI resource, running the venv's own ``dbt`` on the project in ``dbt/``."""

import dagster as dg
from dagster_dbt import DbtCliResource

from poster_assets.defs.dbt.project import dbt_executable, poster_dbt_project


@dg.definitions
def dbt_resources() -> dg.Definitions:
    return dg.Definitions(
        resources={"dbt": DbtCliResource(project_dir=poster_dbt_project, dbt_executable=dbt_executable())}
    )
