"""A store with a folder ingested and the extractors run (and, on request, the dbt models built),
for tests of what sits downstream."""

from pathlib import Path

import dagster as dg
import pytest

from poster_assets.defs.extract.assets import poster_extractors
from poster_assets.defs.ingest.assets import raw_posters
from poster_assets.defs.partitions import BATCHES
from poster_assets.defs.resources import ModelsResource, PosterStore
from poster_assets.ingest.batches import plan_batch

EXTRACT_ASSETS = [raw_posters, poster_extractors]


def resources(store: PosterStore) -> dict:
    """The resources the definitions use, on the test's home (models under ``<home>/models``)."""
    from dagster_dbt import DbtCliResource

    from poster_assets.defs.dbt.project import dbt_executable, poster_dbt_project

    return {
        "store": store,
        "models": ModelsResource(models_dir=str(store.models_dir)),
        "dbt": DbtCliResource(project_dir=poster_dbt_project, dbt_executable=dbt_executable()),
    }


def ingest_partition(store: PosterStore, instance: dg.DagsterInstance, folder: Path) -> str:
    """Plan ``folder`` as a new batch, save its manifest and register the partition."""
    manifest, _ = plan_batch(store.batches_dir, folder)
    assert manifest is not None, f"nothing new in {folder}"
    manifest.save(store.batches_dir)
    instance.add_dynamic_partitions(BATCHES, [manifest.batch])
    return manifest.batch


def extract_folder(home: Path, folder: Path, marts: bool = False) -> PosterStore:
    """Ingest ``folder`` as one batch into a store at ``home`` and materialize the extractors;
    with ``marts``, also build the dbt models (``marts.ssl_labels`` and the rest)."""
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    store = PosterStore(home=str(home))
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        mp.setenv("POSTER_ASSETS_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        batch = ingest_partition(store, instance, folder)
        result = dg.materialize(
            EXTRACT_ASSETS, partition_key=batch, instance=instance, resources=resources(store)
        )
        assert result.success
        if marts:
            build_marts(store, instance)
    return store


def build_marts(store: PosterStore, instance: dg.DagsterInstance | None = None) -> None:
    """``dbt build`` of the project on the store (seconds on a small store)."""
    from poster_assets.defs.dbt.assets import sql_models

    result = dg.materialize([sql_models], instance=instance, resources=resources(store))
    assert result.success
