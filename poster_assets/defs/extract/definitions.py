import dagster as dg

from poster_assets.defs.extract.assets import depth_maps, foreground_masks, layer_masks, ocr_text
from poster_assets.defs.extract.checks import coverage_checks, depth_sanity_check, layer_quality_check
from poster_assets.defs.extract.model_sources import model_sources
from poster_assets.defs.extract.resources import ModelsResource
from poster_assets.defs.extract.schedules import model_watch_schedule, observe_models_job, refresh_schedule

defs = dg.Definitions(
    assets=[*model_sources, ocr_text, depth_maps, foreground_masks, layer_masks],
    asset_checks=[layer_quality_check, depth_sanity_check, *coverage_checks],
    jobs=[observe_models_job],
    schedules=[model_watch_schedule, refresh_schedule],
    resources={"models": ModelsResource()},
)
