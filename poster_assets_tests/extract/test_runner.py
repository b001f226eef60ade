"""The shared extraction loop on a real store: one bad poster fails alone, nothing is redone."""

from pathlib import Path

from poster_assets.defs.resources import PosterStore
from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.extract.runner import batched, run_extraction
from poster_assets.ingest.batches import plan_batch
from poster_assets.ingest.ingest import ingest_batch


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
