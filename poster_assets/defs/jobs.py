"""Jobs that span domains."""

import dagster as dg

from poster_assets.defs.partitions import batch_partitions

# Groups whose assets are per-poster and partitioned by ingest batch.
BATCH_GROUPS = ("ingest", "extract")

batch_job = dg.define_asset_job(
    "batch_job",
    selection=dg.AssetSelection.groups(*BATCH_GROUPS),
    partitions_def=batch_partitions,
    description="Ingest one batch and run every per-poster extractor on it.",
)
