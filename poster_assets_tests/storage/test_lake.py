"""The lake and its catalog on a real store: rows reach the catalog through Parquet segments, a
busy catalog stops no writer and loses nothing, a killed writer leaves no partial segment, and
the lake alone makes the catalog again (after gc, abandon, or a home from before the lake)."""

import multiprocessing as mp
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from poster_assets.defs.resources import PosterStore
from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.extract.runner import Outcome, batch_posters, done_posters, write_chunk
from poster_assets.ingest.batch_state import abandon
from poster_assets.ingest.batches import plan_batch
from poster_assets.ingest.ingest import ingest_batch
from poster_assets.storage import lake
from poster_assets.storage.catalog import lake_status, rebuild_catalog, refresh_catalog
from poster_assets.storage.database import Database
from poster_assets.storage.files import sweep_temporaries
from poster_assets.storage.lake import LAKE_TABLES, SEGMENT_FILE, Lake, Replace
from poster_assets_tests.storage.test_concurrency import hold_write_lock

OCR_VERSION = "ocr-test-v1"


def _ingested(tmp_path: Path, store: PosterStore, folder: str = "in") -> str:
    write_bad_inputs(tmp_path / folder)
    manifest, _ = plan_batch(store.batches_dir, tmp_path / folder)
    manifest.save(store.batches_dir)
    ingest_batch(store.db, store.blobs, manifest)
    return manifest.batch


def _ocr_outcomes(refs, lines: int = 2) -> list[Outcome]:
    return [
        Outcome(
            r.poster_id,
            {
                "ocr_text": [
                    {
                        "poster_id": r.poster_id,
                        "model_version": OCR_VERSION,
                        "line_index": i,
                        "text": f"{r.file_name} line {i}",
                        "confidence": 0.9,
                        "polygon": [0.0, 0.0, 10.0, 0.0, 10.0, 5.0, 0.0, 5.0],
                        "box": [0, 0, 10, 5],
                    }
                    for i in range(lines)
                ]
            },
            seconds=0.01,
        )
        for r in refs
    ]


def _snapshot(db: Database) -> dict[str, list[tuple]]:
    return {t: db.query(f"SELECT * FROM {t} ORDER BY ALL") for t in LAKE_TABLES}


def test_rows_reach_the_catalog_through_segments_and_rebuild_from_them(
    tmp_path: Path, store: PosterStore
) -> None:
    batch = _ingested(tmp_path, store)
    refs = batch_posters(store.db, batch)
    write_chunk(store.db, batch, [("ocr_text", OCR_VERSION, _ocr_outcomes(refs[:4], lines=3))])
    write_chunk(store.db, batch, [("ocr_text", OCR_VERSION, _ocr_outcomes(refs[4:8]))])
    # Redone with fewer lines: the old third lines go, in the catalog and in a rebuild alike.
    write_chunk(store.db, batch, [("ocr_text", OCR_VERSION, _ocr_outcomes(refs[:2], lines=1))])

    segments = store.db.lake.segments(batch)
    assert len(segments) == 4  # the ingest and three chunks, each renamed into place whole
    assert all((s.path / SEGMENT_FILE).exists() for s in segments)
    status = lake_status(store.db)
    assert status.pending == 0
    assert all(lake >= catalog for _, lake, catalog in status.tables)  # the lake also keeps replaced rows
    assert store.db.query("SELECT count(*) FROM ocr_text") == [(2 * 1 + 2 * 3 + 4 * 2,)]

    before = _snapshot(store.db)
    assert rebuild_catalog(store.db).segments == 4
    assert _snapshot(store.db) == before

    # The file itself lost: the lake alone makes the same catalog.
    store.db_path.unlink()
    rebuild_catalog(store.db)
    assert _snapshot(store.db) == before


@pytest.mark.parametrize("group_rows", [100_000, 10])  # one group; groups of one or two segments
def test_segments_applied_together_equal_segments_applied_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group_rows: int
) -> None:
    """Later segments win by key, and their replaced rows drop the earlier segments' rows too."""
    monkeypatch.setattr(lake, "APPLY_GROUP_ROWS", group_rows)
    homes = {how: Database(tmp_path / how / "poster_assets.duckdb") for how in ("one_by_one", "together")}
    ids = [f"{i:064x}" for i in range(4)]
    refs = [type("Ref", (), {"poster_id": pid, "file_name": f"p{i}"})() for i, pid in enumerate(ids)]

    def vectors(value: float) -> dict:
        return {
            "foreground_embeddings": [
                {
                    "poster_id": pid,
                    "kind": "pixels",
                    "model_version": "v",
                    "dim": 2,
                    "embedding": [value, 1.0],
                }
                for pid in ids[:3]
            ]
        }

    def chunk(rs, lines: int) -> tuple[dict, list[Replace]]:
        return {"ocr_text": [r for o in _ocr_outcomes(rs, lines) for r in o.rows["ocr_text"]]}, [
            Replace("ocr_text", OCR_VERSION, [r.poster_id for r in rs])
        ]

    writes = [
        chunk(refs, 3),
        chunk(refs[:2], 1),
        chunk(refs[1:3], 2),
        (vectors(0.25), []),
        (vectors(0.5), []),
    ]
    for how, db in homes.items():
        db.ensure_schema()
        for tables, replaces in writes:
            db.lake.write_segment("b", tables, replaces)
            if how == "one_by_one":
                assert refresh_catalog(db).segments == 1
        if how == "together":
            assert refresh_catalog(db).segments == len(writes)
    one, together = (_snapshot(db) for db in homes.values())
    assert one == together
    lines = dict(homes["together"].query("SELECT poster_id, count(*) FROM ocr_text GROUP BY 1"))
    assert lines == {ids[0]: 1, ids[1]: 2, ids[2]: 2, ids[3]: 3}
    assert {e[0] for *_, e in homes["together"].query("SELECT embedding FROM foreground_embeddings")} == {0.5}


def test_a_busy_catalog_stops_no_writer_and_loses_nothing(tmp_path: Path, store: PosterStore) -> None:
    batch = _ingested(tmp_path, store)
    refs = batch_posters(store.db, batch)[:4]
    ctx = mp.get_context("spawn")
    held = ctx.Event()
    holder = ctx.Process(target=hold_write_lock, args=(str(store.db_path), held, 10.0))
    holder.start()
    assert held.wait(60)
    t0 = time.monotonic()
    write_chunk(store.db, batch, [("ocr_text", OCR_VERSION, _ocr_outcomes(refs))])
    waited = time.monotonic() - t0
    holder.join(60)
    assert holder.exitcode == 0
    assert waited < 8  # it gave the file a moment, not the holder's 10 s

    assert lake_status(store.db).pending == 1
    assert store.db.query("SELECT count(*) FROM ocr_text") == [(0,)]
    # A retried step does not redo the chunk waiting in the lake ...
    assert done_posters(store.db, batch, {"ocr_text": OCR_VERSION})["ocr_text"] == {r.poster_id for r in refs}
    # ... and the next refresh brings it in.
    assert refresh_catalog(store.db).segments == 1
    assert store.db.query("SELECT count(*) FROM ocr_text") == [(8,)]
    assert lake_status(store.db).pending == 0


def _write_segments_forever(home: str, ready) -> None:
    lake = Lake(Path(home) / "lake")
    rows = [
        {
            "poster_id": f"{i:064x}",
            "kind": "pixels",
            "model_version": "v",
            "dim": 768,
            "embedding": [0.1] * 768,
        }
        for i in range(400)
    ]
    lake.write_segment("b", {"foreground_embeddings": rows})
    ready.set()
    while True:
        lake.write_segment("b", {"foreground_embeddings": rows})


def test_a_killed_writer_leaves_no_partial_segment(tmp_path: Path, store: PosterStore) -> None:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    writer = ctx.Process(target=_write_segments_forever, args=(str(store.home_path), ready))
    writer.start()
    assert ready.wait(60)
    time.sleep(1.5)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(10)

    segments = store.db.lake.segments()
    assert segments  # it got some done ...
    temporaries = list(store.db.lake.batch_dir("b").glob(".tmp-*"))
    assert temporaries  # ... and was killed inside one
    # Every segment a reader can see is whole: the catalog takes them all.
    done = refresh_catalog(store.db)
    assert done.segments == len(segments)
    assert store.db.query("SELECT count(*) FROM foreground_embeddings") == [(400,)]
    assert sweep_temporaries(store.home_path, older_than_s=0).removed == temporaries


def test_abandon_removes_the_batch_from_the_lake(tmp_path: Path, store: PosterStore) -> None:
    kept = _ingested(tmp_path, store, "first")
    refs = batch_posters(store.db, kept)[:3]
    write_chunk(store.db, kept, [("ocr_text", OCR_VERSION, _ocr_outcomes(refs))])
    gone = _ingested(tmp_path, store, "second")  # the same bytes: duplicates of the first's posters
    assert store.db.query(
        "SELECT count(*) FROM raw_posters WHERE batch = ? AND status = 'duplicate'", [gone]
    )[0][0]

    abandon(store.db, store.blobs, store.batches_dir, gone)
    assert not store.db.lake.batch_dir(gone).exists()
    after = _snapshot(store.db)
    rebuild_catalog(store.db)
    assert _snapshot(store.db) == after
    abandon(store.db, store.blobs, store.batches_dir, kept)
    assert not store.db.lake.batch_dir(kept).exists()
    assert rebuild_catalog(store.db).rows == 0
    assert all(n == 0 for n in (c for _, _, c in lake_status(store.db).tables))


def test_a_home_from_before_the_lake_is_exported_once(tmp_path: Path, store: PosterStore) -> None:
    batch = _ingested(tmp_path, store)
    refs = batch_posters(store.db, batch)
    write_chunk(store.db, batch, [("ocr_text", OCR_VERSION, _ocr_outcomes(refs))])
    before = _snapshot(store.db)
    # What a home made by an older version looks like: the rows, no lake.
    shutil.rmtree(store.db.lake.root)
    with store.db.transaction() as conn:
        conn.execute("DELETE FROM lake_segments")

    assert refresh_catalog(store.db).migrated
    assert not refresh_catalog(store.db).migrated
    assert {t: lake for t, lake, _ in lake_status(store.db).tables} == {t: len(r) for t, r in before.items()}
    store.db_path.unlink()
    rebuild_catalog(store.db)
    assert _snapshot(store.db) == before
