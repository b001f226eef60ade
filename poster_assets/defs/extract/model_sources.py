"""Models as observable source assets: their data version is the hash of the weights in use
(or the fallback's version), so a changed model marks every asset that used it stale."""

import warnings

import dagster as dg

from poster_assets.defs.extract.resources import ModelsResource
from poster_assets.models.store import model_data_version

# Observable source assets are beta; they are still the idiom for external inputs like weights.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

OCR_MODELS = ("ppocr-det", "ppocr-cls", "ppocr-rec")
DEPTH_MODELS = ("midas-small",)
FOREGROUND_MODELS = ("u2netp",)


def model_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["models", name.replace("-", "_")])


def _model_source(name: str) -> dg.AssetsDefinition:
    @dg.observable_source_asset(
        key=model_key(name),
        group_name="models",
        description=f"Model weights `{name}` from the registry (`poster-assets models list`).",
    )
    def _observe(models: ModelsResource) -> dg.ObserveResult:
        version = model_data_version(name, models.path)
        return dg.ObserveResult(
            data_version=dg.DataVersion(version),
            metadata={"in_use": version, "models_dir": dg.MetadataValue.path(str(models.path))},
        )

    return _observe


model_sources = [_model_source(n) for n in OCR_MODELS + DEPTH_MODELS + FOREGROUND_MODELS]
