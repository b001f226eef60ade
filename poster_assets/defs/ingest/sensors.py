"""The inbox sensor: new files in the watched folder become a new ingest batch."""

import os
import time

import dagster as dg

from poster_assets import settings
from poster_assets.defs.jobs import batch_job
from poster_assets.defs.partitions import batch_partitions
from poster_assets.defs.resources import PosterStore
from poster_assets.ingest.batches import plan_batch

# A file still being copied keeps changing; wait until it has been still for this long.
SETTLE_SECONDS = float(os.environ.get("POSTER_ASSETS_INBOX_SETTLE_S", "5"))


@dg.sensor(
    job=batch_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches $POSTER_ASSETS_INBOX (default <home>/inbox) and ingests new files as a batch.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, store: PosterStore) -> dg.SensorResult | dg.SkipReason:
    inbox = settings.inbox_dir(store.home_path)
    if not inbox.is_dir():
        return dg.SkipReason(f"inbox {inbox} does not exist yet")
    cutoff = time.time_ns() - int(SETTLE_SECONDS * 1e9)
    manifest, settling = plan_batch(
        store.batches_dir, inbox, recursive=True, prefix="inbox", settled_before_ns=cutoff
    )
    if manifest is None:
        waiting = f" ({settling} still settling)" if settling else ""
        return dg.SkipReason(f"no new files in {inbox}{waiting}")
    manifest.save(store.batches_dir)
    context.log.info(f"{len(manifest.files)} new files → batch {manifest.batch}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=manifest.batch, run_key=manifest.batch)],
        dynamic_partitions_requests=[batch_partitions.build_add_request([manifest.batch])],
    )
