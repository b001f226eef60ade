"""The four extractors on real generated posters, through Dagster's in-process materialize."""

from pathlib import Path

import dagster as dg
import pytest

from poster_assets.defs.extract.assets import poster_extractors
from poster_assets.defs.ingest.assets import raw_posters
from poster_assets.defs.partitions import BATCHES
from poster_assets.defs.resources import ModelsResource, PosterStore
from poster_assets.demo import generate_corpus
from poster_assets.extract import evaluate as evaluate_module
from poster_assets.extract.evaluate import evaluate
from poster_assets.ingest.batches import plan_batch
from poster_assets.models import hub, ocr

# Runs PP-OCR and the fallbacks on generated posters.
pytestmark = pytest.mark.slow

ASSETS = [raw_posters, poster_extractors]
EXTRACTORS = ["ocr_text", "depth_maps", "foreground_masks", "layer_masks"]


@pytest.fixture
def batch(tmp_path: Path, store: PosterStore, instance) -> str:
    corpus = tmp_path / "corpus"
    generate_corpus(corpus, n=4, seed=3)
    (corpus / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    manifest, _ = plan_batch(store.batches_dir, corpus)
    manifest.save(store.batches_dir)
    instance.add_dynamic_partitions(BATCHES, [manifest.batch])
    return manifest.batch


def _materialize(store: PosterStore, instance, batch: str) -> dict[str, dg.AssetMaterialization]:
    result = dg.materialize(
        ASSETS,
        partition_key=batch,
        instance=instance,
        resources={"store": store, "models": ModelsResource(models_dir=str(store.home_path / "models"))},
    )
    assert result.success
    return materializations(result)


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    """Asset name -> its materialization in ``result`` (the extractors share one step)."""
    found = [e.materialization for e in result.get_asset_materialization_events()]
    return {m.asset_key.to_user_string(): m for m in found}


def _no_decoding(*args: object) -> None:
    raise AssertionError("a scored poster's masks were decoded again")


def test_extractors_fill_every_table_and_rerun_does_no_work(
    store: PosterStore, instance, batch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _materialize(store, instance, batch)
    for name in EXTRACTORS:
        meta = first[name].metadata
        assert meta["processed"].value == 4, name
        assert meta["failed"].value == 0, name
        assert "data:image/jpeg;base64," in meta["preview"].value, name
    # The step let go of its networks (the run's next steps do not use them): none is cached.
    assert hub._runner.cache_info().currsize == 0 and not ocr._pools and not ocr._engines

    # Every value names the model that made it; the fallbacks say so when no weights are pulled.
    versions = dict(store.db.query("SELECT asset, any_value(model_version) FROM extractions GROUP BY ALL"))
    assert versions["depth_maps"] == "depth:heuristic-v1"
    assert versions["foreground_masks"] == "fg:grabcut-saliency-v1"
    assert versions["ocr_text"].startswith("ppocr:")
    assert versions["layer_masks"].startswith("layers:")

    # The titles the generator drew are read back.
    titles = store.db.query(
        "SELECT upper(replace(r.title, ' ', '')), upper(replace(l.title_text, ' ', '')) FROM layer_masks l "
        "JOIN raw_posters r USING (poster_id) WHERE l.role = 'title'"
    )
    assert len(titles) == 4
    assert sum(a == b for a, b in titles) >= 3, titles

    # Layers: roles are known, each poster has one title and one subject layer.
    roles = store.db.query(
        "SELECT poster_id, count(*) FILTER (role = 'title'), count(*) FILTER (role = 'subject'), "
        "any_value(k) FROM layer_masks GROUP BY ALL"
    )
    assert all(t == 1 and s == 1 and 2 <= k <= 7 for _, t, s, k in roles), roles

    # The generator's ground truth scores the fused layers as `poster-assets evaluate` does.
    # Measured on these 4 posters with the fallbacks: title ink in the title layer 0.908, subject
    # layer vs the true foreground 0.573 (the fallback foreground mask alone: 0.255).
    scored = evaluate(store.db, store.blobs, versions["layer_masks"])
    assert scored.posters == 4
    assert scored.metrics["title_pixels_in_title_layer"] >= 0.85, scored.per_poster
    assert scored.metrics["subject_layer_iou"] >= 0.45, scored.per_poster
    # Each poster is scored once: a second evaluation (the quality check of the next batch run)
    # decodes no mask and gives the same figures.
    assert store.db.query("SELECT count(*) FROM layer_scores")[0][0] == 4
    with monkeypatch.context() as m:
        m.setattr(evaluate_module, "decode_labels", _no_decoding)
        m.setattr(evaluate_module, "decode_mask", _no_decoding)
        again = evaluate(store.db, store.blobs, versions["layer_masks"])
    assert (again.metrics, again.per_poster) == (scored.metrics, scored.per_poster)

    # The quarantined file has no extraction rows and caused no error.
    bad = store.db.query("SELECT poster_id FROM raw_posters WHERE status = 'quarantined'")
    assert len(bad) == 1
    assert store.db.query("SELECT count(*) FROM extractions WHERE poster_id = ?", [bad[0][0]])[0][0] == 0

    stamps = store.db.query("SELECT asset, poster_id, extracted_at FROM extractions ORDER BY ALL")
    second = _materialize(store, instance, batch)
    for name in EXTRACTORS:
        assert second[name].metadata["processed"].value == 0, name
        assert second[name].metadata["already_current"].value == 4, name
    # Nothing to do, so no model was loaded: the OCR engines are named only when they ran.
    assert "engines" in first["ocr_text"].metadata and "engines" not in second["ocr_text"].metadata
    assert store.db.query("SELECT asset, poster_id, extracted_at FROM extractions ORDER BY ALL") == stamps
