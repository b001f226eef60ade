import dagster as dg

from poster_assets.defs.extract.assets import depth_maps, foreground_masks, layer_masks, ocr_text
from poster_assets.defs.extract.checks import layer_quality_check
from poster_assets.defs.extract.model_sources import model_sources
from poster_assets.defs.extract.resources import ModelsResource

defs = dg.Definitions(
    assets=[*model_sources, ocr_text, depth_maps, foreground_masks, layer_masks],
    asset_checks=[layer_quality_check],
    resources={"models": ModelsResource()},
)
