"""Per-poster assets are partitioned by ingest batch, never one partition per image."""

import dagster as dg

BATCHES = "ingest_batches"
batch_partitions = dg.DynamicPartitionsDefinition(name=BATCHES)
