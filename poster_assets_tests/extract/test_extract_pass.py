"""The extractors' shared pass (``extract.pipeline`` under the ``poster_extractors`` multi-asset):
subsets, layers fused in memory, and failures that stay with their poster or their extractor
(real Dagster in-process materialize, DuckDB, generated posters, PP-OCR and the fallbacks)."""

import json
from pathlib import Path

import dagster as dg
import pytest

from poster_assets.defs.extract.assets import LAYER_MASKS, poster_extractors
from poster_assets.defs.ingest.assets import raw_posters
from poster_assets.defs.partitions import BATCHES
from poster_assets.defs.resources import ModelsResource, PosterStore
from poster_assets.demo import generate_corpus
from poster_assets.ingest.batches import plan_batch
from poster_assets.storage.files import file_sha256
from poster_assets_tests.extract.test_extract_assets import materializations

pytestmark = pytest.mark.slow

LAYER_COLUMNS = (
    "poster_id, layer_index, depth_rank, role, area_fraction, bbox, mean_depth, k, title_text, title_box"
)


def _batch(tmp_path: Path, store: PosterStore, instance, n: int = 3) -> str:
    generate_corpus(tmp_path / "corpus", n=n, seed=7)
    manifest, _ = plan_batch(store.batches_dir, tmp_path / "corpus")
    manifest.save(store.batches_dir)
    instance.add_dynamic_partitions(BATCHES, [manifest.batch])
    return manifest.batch


def _materialize(
    store: PosterStore, instance, batch: str, selection: list | None = None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_posters, poster_extractors],
        selection=selection,
        partition_key=batch,
        instance=instance,
        resources={"store": store, "models": ModelsResource(models_dir=str(store.models_dir))},
        raise_on_error=False,
    )


def test_layers_fused_in_memory_are_the_layers_fused_from_the_store(
    tmp_path: Path, store: PosterStore, instance
) -> None:
    batch = _batch(tmp_path, store, instance)
    together = _materialize(store, instance, batch)
    assert together.success
    fused = store.db.query(f"SELECT {LAYER_COLUMNS}, labels_path FROM layer_masks ORDER BY ALL")
    labels = {path: store.blobs.abspath(path).read_bytes() for *_, path in fused}

    # layer_masks alone (as from the UI), with its records gone: fused from the stored inputs.
    with store.db.transaction() as conn:
        conn.execute("DELETE FROM extractions WHERE asset = 'layer_masks'")
    alone = _materialize(store, instance, batch, selection=[LAYER_MASKS])
    assert alone.success
    done = materializations(alone)
    assert list(done) == ["layer_masks"]
    assert done["layer_masks"].metadata["processed"].value == 3
    assert store.db.query(f"SELECT {LAYER_COLUMNS}, labels_path FROM layer_masks ORDER BY ALL") == fused
    assert {path: store.blobs.abspath(path).read_bytes() for path in labels} == labels


def test_a_poster_that_cannot_be_read_fails_alone_for_every_extractor(
    tmp_path: Path, store: PosterStore, instance
) -> None:
    batch = _batch(tmp_path, store, instance)
    assert _materialize(store, instance, batch, selection=["raw_posters"]).success
    (name, path), *_ = store.db.query("SELECT file_name, original_path FROM raw_posters ORDER BY file_name")
    store.blobs.abspath(path).unlink()  # its stored copy is gone

    result = _materialize(store, instance, batch)
    assert result.success
    for asset, mat in materializations(result).items():
        if asset == "raw_posters":
            continue
        meta = {k: v.value for k, v in mat.metadata.items()}
        assert (meta["processed"], meta["failed_this_run"], meta["with_current_value"]) == (2, 1, 2), asset
        ((file, error),) = [(r.data["file"], r.data["error"]) for r in meta["failures"].records]
        assert file == name and error.startswith("FileNotFoundError"), (asset, error)


def test_an_extractor_whose_model_cannot_load_fails_alone(
    tmp_path: Path, store: PosterStore, instance
) -> None:
    batch = _batch(tmp_path, store, instance)
    # A registered detector file that verifies against its checksum but is no network.
    store.models_dir.mkdir(parents=True, exist_ok=True)
    broken = store.models_dir / "det-broken.onnx"
    broken.write_bytes(b"not an onnx file")
    entry = {
        "name": "ppocr-det",
        "version": "broken",
        "source": f"file:{broken.name}",
        "sha256": file_sha256(broken),
    }
    (store.models_dir / "manifest.json").write_text(json.dumps({"model": [entry]}))

    result = _materialize(store, instance, batch)
    assert not result.success
    # Depth and foreground are made and materialized; OCR, and the layers that need it, are not.
    assert sorted(materializations(result)) == ["depth_maps", "foreground_masks", "raw_posters"]
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "poster_extractors"
    why = failure.step_failure_data.user_failure_data.description
    assert why.startswith("ocr_text: ") and "layer_masks: not run: ocr_text could not run" in why
    done = dict(store.db.query("SELECT asset, count(*) FROM extractions WHERE status = 'ok' GROUP BY ALL"))
    assert done == {"depth_maps": 3, "foreground_masks": 3}
