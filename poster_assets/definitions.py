"""The one ``Definitions`` object: ``workspace.yaml`` and ``dagster dev`` load this module."""

import dagster as dg

# Modules, not their ``defs``: Dagster refuses a module with more than one Definitions in scope.
from poster_assets.defs.dbt import definitions as dbt
from poster_assets.defs.embed import definitions as embed
from poster_assets.defs.extract import definitions as extract
from poster_assets.defs.ingest import definitions as ingest
from poster_assets.defs.ingest.sensors import inbox_sensor
from poster_assets.defs.jobs import batch_job, corpus_automation_sensor, corpus_job, ssl_job
from poster_assets.defs.ssl import definitions as ssl
from poster_assets.storage.resource import PosterStore

defs = dg.Definitions.merge(
    ingest.defs,
    extract.defs,
    embed.defs,
    dbt.defs,
    ssl.defs,
    dg.Definitions(
        jobs=[batch_job, corpus_job, ssl_job],
        sensors=[inbox_sensor, corpus_automation_sensor],
        resources={"store": PosterStore()},
    ),
)
