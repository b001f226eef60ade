"""Every registered model as an observable source asset: its data version is the version of
what is in use (the weights' registered version and sha256, or the fallback's name), so a
changed model marks every asset that used it stale."""

import warnings

import dagster as dg

from poster_assets.defs.resources import ModelsResource
from poster_assets.models.registry import builtin_specs

# Observable source assets are beta; they are still the idiom for external inputs like weights.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

MODELS_GROUP = "models"


def model_key(name: str) -> dg.AssetKey:
    return dg.AssetKey([MODELS_GROUP, name.replace("-", "_")])


def _model_source(name: str, task: str) -> dg.AssetsDefinition:
    @dg.observable_source_asset(
        key=model_key(name),
        group_name=MODELS_GROUP,
        description=f"{task} model `{name}` from the registry (`poster-assets models list`).",
    )
    def _observe(models: ModelsResource) -> dg.ObserveResult:
        version = models.data_version(name)
        return dg.ObserveResult(
            data_version=dg.DataVersion(version),
            metadata={"in_use": version, "models_dir": dg.MetadataValue.path(str(models.path))},
        )

    return _observe


@dg.definitions
def model_sources() -> dg.Definitions:
    """One source asset per registry entry (this module holds nothing else the loader needs)."""
    return dg.Definitions(assets=[_model_source(spec.name, spec.task) for spec in builtin_specs()])
