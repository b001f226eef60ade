"""A batch is up to date when a run of batch_job would change nothing: every asset materialized
and, at the versions its facts were read at, every ok poster has a value or a failure of each
extractor (what `poster-assets run --all` leaves out). Abandoning one reads a file of any age."""

from __future__ import annotations

from pathlib import Path

from poster_assets.defs.resources import PosterStore
from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.ingest.batch_state import (
    COMPLETE,
    EXTRACTORS,
    FAILED,
    RAW_ASSET,
    BatchFacts,
    RunFacts,
    abandon,
    decide_state,
    plan_abandon,
)
from poster_assets.ingest.batches import plan_batch
from poster_assets.ingest.ingest import ingest_batch
from poster_assets.storage import database

ASSETS = (RAW_ASSET, *EXTRACTORS)
DONE = RunFacts(run_status="succeeded", materialized=frozenset(ASSETS))


def _facts(ok: int = 3, extracted: int = 3, failed: int = 0, **per_asset: int) -> BatchFacts:
    counts = {a: extracted for a in EXTRACTORS} | per_asset
    return BatchFacts("b", True, ok=ok, extracted=counts, failed={a: failed for a in EXTRACTORS})


def test_every_poster_with_a_value_or_a_failure_is_up_to_date() -> None:
    state = decide_state(_facts(), DONE, ASSETS)
    assert state.state == COMPLETE and state.up_to_date
    # A failure at the current version is not redone by a run: still nothing to do.
    assert decide_state(_facts(extracted=2, failed=1), DONE, ASSETS).up_to_date
    # No ok poster at all (every file quarantined): nothing to extract.
    assert decide_state(_facts(ok=0, extracted=0), DONE, ASSETS).up_to_date


def test_a_poster_left_or_an_unfinished_run_is_work() -> None:
    # A new model version: the facts at its version count fewer posters.
    left = _facts(depth_maps=1)
    assert left.pending("depth_maps") == 2 and left.pending("ocr_text") == 0 and not left.all_extracted
    assert not decide_state(left, DONE, ASSETS).up_to_date
    # An asset never materialized for the partition, or a failed latest run.
    missing = RunFacts(run_status="succeeded", materialized=frozenset(ASSETS) - {"layer_masks"})
    assert not decide_state(_facts(), missing, ASSETS).up_to_date
    failed = decide_state(_facts(), RunFacts(run_status="failed", materialized=frozenset(ASSETS)), ASSETS)
    assert failed.state == FAILED and not failed.up_to_date


def test_abandon_reads_a_file_from_before_the_layer_scores_table(tmp_path: Path, store: PosterStore) -> None:
    write_bad_inputs(tmp_path / "in")
    manifest, _ = plan_batch(store.batches_dir, tmp_path / "in")
    assert manifest is not None
    manifest.save(store.batches_dir)
    ingest_batch(store.db, store.blobs, manifest)
    with store.db.transaction() as conn:
        conn.execute("DROP TABLE layer_scores")
    # A new process applies the schema on its first write, not on a read-only plan.
    database._schema_ready.discard(store.db.path.resolve())

    plan = plan_abandon(store.db, store.blobs, store.batches_dir, manifest.batch)
    assert plan.rows["raw_posters"] > 0 and "layer_scores" not in plan.rows
    done = abandon(store.db, store.blobs, store.batches_dir, manifest.batch)
    assert done.rows == plan.rows
    assert store.db.query("SELECT count(*) FROM raw_posters") == [(0,)]
