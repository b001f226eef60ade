"""A model change re-extracts exactly what that model produced, through the refresh schedule."""

import datetime
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from poster_assets.defs.extract.schedules import refresh_schedule
from poster_assets.defs.partitions import BATCHES
from poster_assets.defs.resources import ModelsResource, PosterStore
from poster_assets.demo import generate_corpus
from poster_assets.ingest.batches import plan_batch
from poster_assets.models import weights as model_store
from poster_assets.models.registry import get_spec
from poster_assets.storage.catalog import rebuild_catalog
from poster_assets.storage.files import file_sha256
from poster_assets_tests.extract.test_extract_assets import materializations

# Runs PP-OCR twice through Dagster.
pytestmark = pytest.mark.slow

EXTRACTORS = ["ocr_text", "depth_maps", "foreground_masks", "layer_masks"]


def _run(defs: dg.Definitions, instance, batch: str) -> dict[str, dict]:
    result = defs.resolve_job_def("batch_job").execute_in_process(partition_key=batch, instance=instance)
    assert result.success
    found = materializations(result)
    return {name: {k: v.value for k, v in found[name].metadata.items()} for name in EXTRACTORS}


def test_new_ocr_version_redoes_ocr_and_layers_only(tmp_path: Path, store: PosterStore, instance) -> None:
    from poster_assets.definitions import defs

    generate_corpus(tmp_path / "corpus", n=3, seed=5)
    manifest, _ = plan_batch(store.batches_dir, tmp_path / "corpus")
    manifest.save(store.batches_dir)
    instance.add_dynamic_partitions(BATCHES, [manifest.batch])
    first = _run(defs, instance, manifest.batch)
    assert all(first[n]["processed"] == 3 for n in EXTRACTORS)
    old_ocr = first["ocr_text"]["model_version"]

    # Register a second copy of the recogniser under a new version, as a user would.
    models = store.home_path / "models"
    models.mkdir(exist_ok=True)
    rec = model_store.resolve_path(get_spec("ppocr-rec", models), models)
    shutil.copy(rec, models / "rec-ft1.onnx")
    (models / "manifest.json").write_text(
        json.dumps(
            {
                "model": [
                    {
                        "name": "ppocr-rec",
                        "version": "PP-OCRv6-rec-ft1",
                        "source": "file:rec-ft1.onnx",
                        "sha256": file_sha256(rec),
                    }
                ]
            }
        )
    )
    observed = defs.resolve_job_def("observe_models_job").execute_in_process(instance=instance)
    assert observed.success
    observations = {
        e.asset_observation_data.asset_observation.asset_key.to_user_string(): e.asset_observation_data
        for e in observed.get_asset_observation_events()
    }
    # The model's source asset now reports the new version: the UI marks ocr_text stale.
    rec = observations["models/ppocr_rec"].asset_observation
    assert "PP-OCRv6-rec-ft1" in rec.tags["dagster/data_version"]

    requests = refresh_schedule(
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime.datetime(2026, 11, 28, 3),
            resources={"store": store, "models": ModelsResource(models_dir=str(models))},
        )
    )
    assert [r.partition_key for r in requests] == [manifest.batch]
    second = _run(defs, instance, requests[0].partition_key)

    # New OCR values and new layers (their version names the OCR version); no depth or
    # foreground model call at all.
    assert second["ocr_text"]["processed"] == 3 and second["ocr_text"]["model_version"] != old_ocr
    assert "PP-OCRv6-rec-ft1" in second["ocr_text"]["model_version"]
    assert second["layer_masks"]["processed"] == 3
    assert second["depth_maps"]["processed"] == 0 and second["foreground_masks"]["processed"] == 0

    # Both OCR versions sit side by side until gc, so they can be compared in SQL.
    versions = store.db.query("SELECT count(DISTINCT model_version) FROM ocr_text")[0][0]
    assert versions == 2
    assert store.db.query("SELECT count(DISTINCT model_version) FROM depth_maps")[0][0] == 1

    # The one definition of "current" names exactly what the refresh made.
    from poster_assets.extract.gc import collect_garbage
    from poster_assets.extract.versions import current_versions
    from poster_assets.models.hub import Models

    current = current_versions(Models(models))
    assert {n: current.by_asset()[n] for n in EXTRACTORS} == {
        n: second[n]["model_version"] for n in EXTRACTORS
    }

    # gc drops the old version's rows and files, and nothing current.
    old_layer_files = [
        p
        for (p,) in store.db.query(
            "SELECT DISTINCT labels_path FROM layer_masks WHERE model_version <> ?", [current.layers]
        )
    ]
    report = collect_garbage(store.db, store.blobs, current)
    assert {t for t, _ in report.rows} == {"ocr_text", "layer_masks"}
    assert report.files == len(old_layer_files) == 3
    assert not any(store.blobs.abspath(p).exists() for p in old_layer_files)
    assert store.db.query("SELECT count(DISTINCT model_version) FROM ocr_text")[0][0] == 1
    assert store.db.query("SELECT count(*) FROM layer_masks")[0][0] > 0

    # gc rewrote the lake too: the catalog made again from it has no old version either.
    before = store.db.query("SELECT count(*) FROM ocr_text")
    rebuild_catalog(store.db)
    assert store.db.query("SELECT count(DISTINCT model_version) FROM ocr_text")[0][0] == 1
    assert store.db.query("SELECT count(*) FROM ocr_text") == before
