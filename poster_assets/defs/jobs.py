"""Jobs that span domains (they run with the executor in ``executor.py``)."""

import dagster as dg

from poster_assets.defs.dbt.assets import SQL_MODEL_CHECKS
from poster_assets.defs.partitions import batch_partitions

# Groups whose assets are per-poster and partitioned by ingest batch.
BATCH_GROUPS = ("ingest", "extract", "embed")

batch_job = dg.define_asset_job(
    "batch_job",
    # The dbt tests of raw_posters and the extractors are checks on them that `dbt build` runs.
    selection=dg.AssetSelection.groups(*BATCH_GROUPS) - SQL_MODEL_CHECKS,
    partitions_def=batch_partitions,
    description="Ingest one batch and run every per-poster extractor on it.",
)

# Groups of unpartitioned assets computed over the whole corpus.
CORPUS_GROUPS = ("search", "sql")

corpus_job = dg.define_asset_job(
    "corpus_job",
    selection=dg.AssetSelection.groups(*CORPUS_GROUPS) | SQL_MODEL_CHECKS,
    description="Rebuild the corpus-wide assets (similarity indexes, dbt models and their tests).",
)

# The trained encoder: minutes of training, so only on request (`poster-assets train-encoder`).
ssl_job = dg.define_asset_job(
    "ssl_job",
    selection=dg.AssetSelection.assets("poster_encoder", ["models", "ssl_encoder"]),
    description="Train the SSL encoder on every labelled poster, export it and, once its health "
    "check passed, make it current.",
)

# Declarative automation for the corpus-wide assets: rebuilt once the per-poster assets under
# them updated (a batch from the inbox sensor, the nightly refresh, a run launched in the UI).
# On by default, unlike the sensors and schedules that start work: it only follows work someone
# started, and without it a batch would leave the indexes and marts behind its posters.
corpus_automation_sensor = dg.AutomationConditionSensorDefinition(
    "corpus_automation_sensor",
    target=dg.AssetSelection.groups(*CORPUS_GROUPS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Rebuilds indexes and dbt models when the per-poster assets under them change.",
)
