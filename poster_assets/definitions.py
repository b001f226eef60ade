"""The one ``Definitions`` object: ``workspace.yaml`` and ``dagster dev`` load this module."""

import dagster as dg

from poster_assets.defs.dbt.definitions import defs as dbt_defs
from poster_assets.defs.embed.definitions import defs as embed_defs
from poster_assets.defs.extract.definitions import defs as extract_defs
from poster_assets.defs.ingest.definitions import defs as ingest_defs
from poster_assets.defs.ingest.sensors import inbox_sensor
from poster_assets.defs.jobs import batch_job, corpus_automation_sensor, corpus_job
from poster_assets.storage.resource import PosterStore

defs = dg.Definitions.merge(
    ingest_defs,
    extract_defs,
    embed_defs,
    dbt_defs,
    dg.Definitions(
        jobs=[batch_job, corpus_job],
        sensors=[inbox_sensor, corpus_automation_sensor],
        resources={"store": PosterStore()},
    ),
)
