import dagster as dg
from dagster_dbt import DbtCliResource

from poster_assets.defs.dbt.assets import sql_models
from poster_assets.defs.dbt.project import dbt_executable, poster_dbt_project

defs = dg.Definitions(
    assets=[sql_models],
    resources={"dbt": DbtCliResource(project_dir=poster_dbt_project, dbt_executable=dbt_executable())},
)
