"""Watching the models: an observation records a new data version when weights change."""

import os

import dagster as dg

from poster_assets.defs.models.sources import MODELS_GROUP

MODEL_WATCH_CRON = os.environ.get("POSTER_ASSETS_MODEL_WATCH_CRON", "*/30 * * * *")

observe_models_job = dg.define_asset_job(
    "observe_models_job",
    selection=dg.AssetSelection.groups(MODELS_GROUP, include_sources=True),
    description="Re-hash the model weights in use; a new hash marks dependent assets stale.",
)

model_watch_schedule = dg.ScheduleDefinition(
    name="model_watch_schedule",
    job=observe_models_job,
    cron_schedule=MODEL_WATCH_CRON,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Observes the models (default every 30 min, POSTER_ASSETS_MODEL_WATCH_CRON).",
)
