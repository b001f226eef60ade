from pathlib import Path

from poster_assets.defs.resources import PosterStore
from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.ingest.batches import BatchManifest, plan_batch
from poster_assets.ingest.ingest import ingest_batch


def _ingest(store: PosterStore, folder: Path) -> BatchManifest | None:
    manifest, _ = plan_batch(store.batches_dir, folder)
    if manifest is not None:
        manifest.save(store.batches_dir)
        ingest_batch(store.db, store.blobs, manifest)
    return manifest


def test_every_file_is_accounted_for(tmp_path: Path, store: PosterStore) -> None:
    expected = write_bad_inputs(tmp_path / "in")
    _ingest(store, tmp_path / "in")
    rows = store.db.query("SELECT file_name, status, reason, width, height, thumbnail_path FROM raw_posters")
    got = {r[0]: r[1] for r in rows}
    assert got == expected
    for name, status, reason, width, height, thumb in rows:
        if status == "ok":
            assert width >= 32 and height >= 32 and (store.home_path / thumb).exists()
        else:
            assert reason, f"{name} has no reason"
    dup = next(r for r in rows if r[1] == "duplicate")
    assert "good poster.jpg" in dup[2]


def test_non_ascii_and_spaces_survive(tmp_path: Path, store: PosterStore) -> None:
    write_bad_inputs(tmp_path / "in")
    _ingest(store, tmp_path / "in")
    names = {r[0] for r in store.db.query("SELECT source_uri FROM raw_posters WHERE status = 'ok'")}
    assert str(tmp_path / "in" / "affiche_été_ünïcødé.png") in names
    assert str(tmp_path / "in" / "good poster.jpg") in names


def test_reingest_adds_no_rows(tmp_path: Path, store: PosterStore) -> None:
    write_bad_inputs(tmp_path / "in")
    first = _ingest(store, tmp_path / "in")
    before = store.db.query("SELECT * EXCLUDE (ingested_at) FROM raw_posters ORDER BY ALL")
    assert _ingest(store, tmp_path / "in") is None  # nothing new to plan
    # Re-running the same batch (as a retried partition would) writes nothing either.
    summary = ingest_batch(store.db, store.blobs, first)
    assert summary.new_rows == 0 and summary.already_ingested == len(first.files)
    after = store.db.query("SELECT * EXCLUDE (ingested_at) FROM raw_posters ORDER BY ALL")
    assert before == after


def test_a_batch_run_again_after_its_files_went_away_adds_no_row(tmp_path: Path, store: PosterStore) -> None:
    write_bad_inputs(tmp_path / "in")
    first = _ingest(store, tmp_path / "in")
    before = store.db.query("SELECT * EXCLUDE (ingested_at) FROM raw_posters ORDER BY ALL")
    # The source folder is deleted, or a file edited, after ingest (the blobs keep its bytes):
    # a refresh of the batch neither reads them again nor adds a row for them.
    (tmp_path / "in" / "good poster.jpg").write_bytes(b"edited later")
    for path in (tmp_path / "in").iterdir():
        if path.name != "good poster.jpg" and path.is_file() and not path.is_symlink():
            path.unlink()
    summary = ingest_batch(store.db, store.blobs, first)
    assert summary.new_rows == 0 and summary.already_ingested == len(first.files)
    assert store.db.query("SELECT * EXCLUDE (ingested_at) FROM raw_posters ORDER BY ALL") == before


def test_same_bytes_in_a_later_batch_is_a_duplicate(tmp_path: Path, store: PosterStore) -> None:
    write_bad_inputs(tmp_path / "a")
    _ingest(store, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "again.jpg").write_bytes((tmp_path / "a" / "good poster.jpg").read_bytes())
    _ingest(store, tmp_path / "b")
    status, dup_of = store.db.query(
        "SELECT status, duplicate_of FROM raw_posters WHERE file_name = 'again.jpg'"
    )[0]
    assert status == "duplicate" and dup_of.endswith("good poster.jpg")


def test_sidecar_fields_land_in_columns(tmp_path: Path, store: PosterStore) -> None:
    write_bad_inputs(tmp_path / "in")
    (tmp_path / "in" / "meta.csv").write_text(
        "file,title,genres,year\ngood poster.jpg,The Long Night,horror|thriller,1999\n", encoding="utf-8"
    )
    manifest, _ = plan_batch(store.batches_dir, tmp_path / "in", tmp_path / "in" / "meta.csv")
    ingest_batch(store.db, store.blobs, manifest)
    row = store.db.query("SELECT title, genres, year FROM raw_posters WHERE file_name = 'good poster.jpg'")[0]
    assert row == ("The Long Night", ["horror", "thriller"], 1999)
    assert all(not e.path.endswith(".csv") for e in manifest.files)
