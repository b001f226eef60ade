"""The shared extraction loop on a real store: one bad poster fails alone, nothing is redone, and
any number of runs may write the same chunk."""

import multiprocessing as mp
from pathlib import Path

import pytest

from poster_assets.defs.resources import PosterStore
from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.extract.runner import Outcome, batch_posters, batched, run_extraction, write_chunk
from poster_assets.ingest.batches import plan_batch
from poster_assets.ingest.ingest import ingest_batch
from poster_assets.storage.database import Database


def test_a_poster_that_breaks_the_batch_fails_alone(tmp_path: Path, store: PosterStore) -> None:
    write_bad_inputs(tmp_path / "in")
    manifest, _ = plan_batch(store.batches_dir, tmp_path / "in")
    ingest_batch(store.db, store.blobs, manifest)
    ok = [r[0] for r in store.db.query("SELECT poster_id FROM raw_posters WHERE status = 'ok' ORDER BY 1")]
    bad = ok[3]
    calls: list[int] = []

    def many(refs):
        calls.append(len(refs))
        if any(r.poster_id == bad for r in refs):
            raise RuntimeError("model choked")
        return [{"ocr_text": []} for _ in refs]

    stats = run_extraction(store.db, "ocr_text", "test-v1", manifest.batch, batched(many), chunk_size=4)
    assert stats.processed == len(ok) - 1 and stats.failed == 1
    assert stats.errors == [(bad, "RuntimeError: model choked")]
    rows = dict(store.db.query("SELECT poster_id, status FROM extractions WHERE model_version = 'test-v1'"))
    assert rows[bad] == "failed" and sum(s == "ok" for s in rows.values()) == len(ok) - 1

    again = run_extraction(store.db, "ocr_text", "test-v1", manifest.batch, batched(many), chunk_size=4)
    assert again.processed == 0 and again.up_to_date == len(ok)


EMBEDDINGS_VERSION = "embed-v1+test"  # the asset's combined version; rows carry per-kind versions
KIND_VERSIONS = {"poster": "poster:letterbox-v1+test", "pixels": "pixels-16@v1"}


def _embedding_rows(refs) -> list[dict]:
    """What ``embed_chunk`` returns: one row per poster and kind, at the kind's own version."""
    return [
        {
            "foreground_embeddings": [
                {"poster_id": r.poster_id, "kind": k, "model_version": v, "dim": 2, "embedding": [0.6, 0.8]}
                for k, v in KIND_VERSIONS.items()
            ]
        }
        for r in refs
    ]


def _ingested(tmp_path: Path, store: PosterStore) -> str:
    write_bad_inputs(tmp_path / "in")
    manifest, _ = plan_batch(store.batches_dir, tmp_path / "in")
    ingest_batch(store.db, store.blobs, manifest)
    return manifest.batch


def test_a_chunk_written_twice_replaces_its_rows(tmp_path: Path, store: PosterStore) -> None:
    batch = _ingested(tmp_path, store)
    refs = batch_posters(store.db, batch)[:3]
    outcomes = [Outcome(r.poster_id, rows) for r, rows in zip(refs, _embedding_rows(refs), strict=True)]
    write_chunk(store.db, batch, [("foreground_embeddings", EMBEDDINGS_VERSION, outcomes)])
    # The same chunk again (a redone chunk, a second run): no duplicate key, the same rows.
    write_chunk(store.db, batch, [("foreground_embeddings", EMBEDDINGS_VERSION, outcomes)])
    assert store.db.query("SELECT count(*), count(DISTINCT (poster_id, kind)) FROM foreground_embeddings")[
        0
    ] == (
        6,
        6,
    )

    # A poster redone at the same version with fewer detail rows keeps none of the old ones.
    lines = [
        {
            "poster_id": refs[0].poster_id,
            "model_version": "ocr-v1",
            "line_index": i,
            "text": f"line {i}",
            "confidence": 0.9,
            "polygon": [0.0] * 8,
            "box": [0, 0, 1, 1],
        }
        for i in range(3)
    ]
    write_chunk(store.db, batch, [("ocr_text", "ocr-v1", [Outcome(refs[0].poster_id, {"ocr_text": lines})])])
    write_chunk(
        store.db, batch, [("ocr_text", "ocr-v1", [Outcome(refs[0].poster_id, {"ocr_text": lines[:1]})])]
    )
    assert store.db.query("SELECT line_index FROM ocr_text") == [(0,)]


def test_a_rewritten_mask_drops_the_posters_layer_scores(tmp_path: Path, store: PosterStore) -> None:
    batch = _ingested(tmp_path, store)
    refs = batch_posters(store.db, batch)[:2]
    with store.db.transaction() as conn:
        conn.executemany(
            "INSERT INTO layer_scores VALUES (?, 'uri', 'layers-v1', 'fg-v1', 'truth', 1, 1, 1, now())",
            [[r.poster_id] for r in refs],
        )
    mask = {
        "poster_id": refs[0].poster_id,
        "model_version": "fg-v1",
        "mask_path": "blobs/fg.png",
        "area_fraction": 0.5,
        "bbox": [0, 0, 1, 1],
        "mean_probability": 0.5,
    }
    write_chunk(
        store.db,
        batch,
        [("foreground_masks", "fg-v1", [Outcome(refs[0].poster_id, {"foreground_masks": [mask]})])],
    )
    # Its score was computed from the mask it had: it is scored again; the other poster's stays.
    assert store.db.query("SELECT poster_id FROM layer_scores") == [(refs[1].poster_id,)]


def _embed_concurrently(db_path: str, batch: str, both_planned, results) -> None:
    """One `poster-assets run --all` worth of foreground_embeddings: wait until the other process
    also planned its work, so both write every chunk."""
    planned = []

    def chunk(refs):
        if not planned:
            planned.append(True)
            both_planned.wait(60)
        return [Outcome(r.poster_id, rows) for r, rows in zip(refs, _embedding_rows(refs), strict=True)]

    stats = run_extraction(
        Database(Path(db_path)), "foreground_embeddings", EMBEDDINGS_VERSION, batch, chunk, 4
    )
    results.put(stats.processed)


@pytest.mark.slow
def test_two_concurrent_runs_writing_the_same_chunks_both_finish(tmp_path: Path, store: PosterStore) -> None:
    batch = _ingested(tmp_path, store)
    ok = len(batch_posters(store.db, batch))
    ctx = mp.get_context("spawn")
    both_planned, results = ctx.Barrier(2), ctx.Queue()
    runs = [
        ctx.Process(target=_embed_concurrently, args=(str(store.db_path), batch, both_planned, results))
        for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(180)
    assert [run.exitcode for run in runs] == [0, 0]
    assert [results.get(timeout=5) for _ in runs] == [ok, ok]  # each run did (and wrote) every poster
    rows = store.db.query(
        "SELECT kind, count(*), count(DISTINCT poster_id) FROM foreground_embeddings GROUP BY 1"
    )
    assert sorted(rows) == [("pixels", ok, ok), ("poster", ok, ok)]
    done = store.db.query(
        "SELECT count(*) FROM extractions WHERE asset = 'foreground_embeddings' AND status = 'ok'"
    )
    assert done == [(ok,)]
