"""Keeping extraction current: refresh the batches with work on a schedule.

Off until a person turns it on in the UI (Automation), as Dagster users expect. Each night it
requests a run for each batch that ``poster-assets run --all`` would run (``stale_batches``: an
asset never materialized, a failed latest run, or an ok poster without a value at the current
model version), so a quiet night launches nothing; the extractors of a requested batch then
skip every poster that is already current.
"""

import os

import dagster as dg

from poster_assets.defs.batch_runs import stale_batches
from poster_assets.defs.jobs import batch_job
from poster_assets.defs.partitions import BATCHES
from poster_assets.defs.resources import ModelsResource, PosterStore
from poster_assets.extract.versions import current_versions

REFRESH_CRON = os.environ.get("POSTER_ASSETS_REFRESH_CRON", "0 3 * * *")


@dg.schedule(
    job=batch_job,
    cron_schedule=REFRESH_CRON,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Nightly (POSTER_ASSETS_REFRESH_CRON, default 03:00): every batch with missing or stale "
    "work; none when every batch is current.",
)
def refresh_schedule(
    context: dg.ScheduleEvaluationContext, store: PosterStore, models: ModelsResource
) -> list[dg.RunRequest] | dg.SkipReason:
    batches = context.instance.get_dynamic_partitions(BATCHES)
    if not batches:
        return dg.SkipReason("no ingest batches yet")
    # Versions come from the registry (``Models.*_version``), never from a loaded network: a tick
    # in the code server compiles nothing.
    stale = stale_batches(context.instance, store, current_versions(models).by_asset())
    if not stale:
        return dg.SkipReason(
            f"nothing to do: all {len(batches)} batch(es) are complete at the current model versions "
            "or being run"
        )
    stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
    return [dg.RunRequest(partition_key=s.batch, run_key=f"refresh-{s.batch}-{stamp}") for s in stale]
