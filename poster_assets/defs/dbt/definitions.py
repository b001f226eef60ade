import dagster as dg
from dagster_dbt import DbtCliResource

from poster_assets.defs.dbt.assets import sql_models
from poster_assets.defs.dbt.project import dbt_executable, poster_dbt_project

# `dbt build` of every model (unpartitioned): run it after batches land, from the UI, the CLI or a schedule.
sql_job = dg.define_asset_job(
    "sql_job", selection=dg.AssetSelection.groups("sql"), description="Rebuild and test the dbt models."
)

defs = dg.Definitions(
    assets=[sql_models],
    jobs=[sql_job],
    resources={"dbt": DbtCliResource(project_dir=poster_dbt_project, dbt_executable=dbt_executable())},
)
