"""A re-run with nothing to do still shows each extractor's whole partition: the same totals, a
row count that is the partition's rows in the table, and the same preview (real Dagster, real
OCR and fallbacks on generated posters)."""

from pathlib import Path

import pytest

from poster_assets.defs.partitions import BATCHES
from poster_assets.defs.resources import PosterStore
from poster_assets.demo import generate_corpus
from poster_assets.ingest.batches import plan_batch
from poster_assets_tests.extract.test_extract_assets import EXTRACTORS
from poster_assets_tests.extract.test_extract_assets import _materialize as materialize_batch

# Runs PP-OCR and the fallbacks on generated posters.
pytestmark = pytest.mark.slow

# What describes the partition, not the run.
PARTITION = (
    "model_version",
    "ok_posters_in_batch",
    "with_current_value",
    "failed",
    "pending",
    "dagster/row_count",
    "rows_at_other_versions",
    "preview",
)


def _materialize(store: PosterStore, instance, batch: str) -> dict[str, dict]:
    found = materialize_batch(store, instance, batch)
    return {name: {k: v.value for k, v in m.metadata.items()} for name, m in found.items()}


def test_a_rerun_with_nothing_to_do_shows_the_same_partition(
    tmp_path: Path, store: PosterStore, instance
) -> None:
    corpus = tmp_path / "corpus"
    generate_corpus(corpus, n=3, seed=5)
    (corpus / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    manifest, _ = plan_batch(store.batches_dir, corpus)
    manifest.save(store.batches_dir)
    instance.add_dynamic_partitions(BATCHES, [manifest.batch])

    first = _materialize(store, instance, manifest.batch)
    second = _materialize(store, instance, manifest.batch)
    for name in EXTRACTORS:
        again = second[name]
        assert (first[name]["processed"], again["processed"], again["already_current"]) == (3, 0, 3), name
        for key in PARTITION:
            assert again[key] == first[name][key], (name, key)
        assert (again["ok_posters_in_batch"], again["with_current_value"], again["failed"]) == (3, 3, 0)
        ((rows,),) = store.db.query(
            f"SELECT count(*) FROM {name} WHERE model_version = ? AND poster_id IN "
            "(SELECT poster_id FROM raw_posters WHERE batch = ? AND status = 'ok')",
            [again["model_version"], manifest.batch],
        )
        assert again["dagster/row_count"] == rows > 0, name
        assert "data:image/jpeg;base64," in again["preview"], name
        assert list(again)[0] == "preview", name
    # raw_posters: the batch's rows, not the rows the run added (none).
    raw = second["raw_posters"]
    assert (raw["new_rows"], raw["dagster/row_count"], raw["ok"], raw["quarantined"]) == (0, 4, 3, 1)
    assert raw["preview"] == first["raw_posters"]["preview"]
