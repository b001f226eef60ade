"""A store with a folder ingested and the four extractors run, for tests of what sits downstream."""

from pathlib import Path

import dagster as dg
import pytest

from poster_assets.defs.extract.assets import depth_maps, foreground_masks, layer_masks, ocr_text
from poster_assets.defs.extract.resources import ModelsResource
from poster_assets.defs.ingest.assets import raw_posters
from poster_assets.defs.partitions import BATCHES
from poster_assets.headless import plan_batch
from poster_assets.storage.resource import PosterStore

EXTRACT_ASSETS = [raw_posters, ocr_text, depth_maps, foreground_masks, layer_masks]


def extract_folder(home: Path, folder: Path) -> PosterStore:
    """Ingest ``folder`` as one batch into a store at ``home`` and materialize the extractors."""
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    store = PosterStore(home=str(home))
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        mp.setenv("POSTER_ASSETS_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        manifest = plan_batch(store, folder, None, recursive=False)
        manifest.save(store.batches_dir)
        instance.add_dynamic_partitions(BATCHES, [manifest.batch])
        result = dg.materialize(
            EXTRACT_ASSETS,
            partition_key=manifest.batch,
            instance=instance,
            resources={"store": store, "models": ModelsResource(models_dir=str(home / "models"))},
        )
    assert result.success
    return store
