"""Keeping extraction current: refresh every batch on a schedule.

Off until a person turns it on in the UI (Automation), as Dagster users expect. A refresh
re-runs each batch; the extractors skip every poster that already has a value at the current
model version, so only what a model change touched is recomputed.
"""

import os

import dagster as dg

from poster_assets.defs.jobs import batch_job
from poster_assets.defs.partitions import BATCHES

REFRESH_CRON = os.environ.get("POSTER_ASSETS_REFRESH_CRON", "0 3 * * *")


@dg.schedule(
    job=batch_job,
    cron_schedule=REFRESH_CRON,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Nightly (POSTER_ASSETS_REFRESH_CRON, default 03:00): every batch, missing or stale work.",
)
def refresh_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    batches = context.instance.get_dynamic_partitions(BATCHES)
    if not batches:
        return dg.SkipReason("no ingest batches yet")
    stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
    return [dg.RunRequest(partition_key=b, run_key=f"refresh-{b}-{stamp}") for b in batches]
