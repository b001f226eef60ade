"""Bad input never stops a batch, and every file is accounted for: sidecars with bad values,
names that are not UTF-8 or hold control characters, special files, huge files, copies of a
non-poster and corrupt PNG chunks. Every case is a real file made in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from poster_assets.cli import main
from poster_assets.defs.resources import PosterStore
from poster_assets.demo.bad_inputs import (
    HUGE_FILE_BYTES,
    NON_UTF8_NAME,
    NON_UTF8_SHOWN,
    SIDECAR_BAD_LINES,
    SIDECAR_ERRORS,
    _poster,
    _save,
    write_bad_inputs,
)
from poster_assets.ingest.batches import BatchManifest, plan_batch, scan
from poster_assets.ingest.decode import DEFAULT_MAX_FILE_BYTES
from poster_assets.ingest.ingest import IngestSummary, ingest_batch
from poster_assets.storage.database import Database

GOOD = _save(_poster(1), "JPEG", quality=90)


def _ingest(store: PosterStore, folder: Path, sidecar: Path | None = None, **kw) -> IngestSummary:
    """Plan, save the manifest, load it back (as the asset does) and ingest it, under a deadline:
    a FIFO opened for reading would block forever, which must fail the test, not hang it."""
    out: dict[str, object] = {}

    def work() -> None:
        try:
            manifest, _ = plan_batch(store.batches_dir, folder, sidecar)
            assert manifest is not None
            manifest.save(store.batches_dir)
            loaded = BatchManifest.load(store.batches_dir, manifest.batch)
            out["summary"] = ingest_batch(store.db, store.blobs, loaded, **kw)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "ingest hung (a FIFO opened for reading?)"
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["summary"]  # type: ignore[return-value]


def _rows(store: PosterStore, *cols: str) -> dict[str, tuple]:
    got = store.db.query(f"SELECT file_name, {', '.join(cols)} FROM raw_posters")
    return {r[0]: r[1:] for r in got}


# --- sidecars -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kept", "dropped"),
    [
        (
            '{"file": "a.jpg", "title": "Kept", "genres": ["noir"], "year": 1e999}',
            ("Kept", ["noir"], None),
            "year",
        ),
        (
            '{"file": "a.jpg", "title": "Kept", "genres": ["noir"], "year": 99999999999}',
            ("Kept", ["noir"], None),
            "year",
        ),
        ('{"file": "a.jpg", "title": "Kept", "genres": 5, "year": 1999}', ("Kept", None, 1999), "genres"),
        (
            '{"file": "a.jpg", "title": ["x"], "genres": "a|b", "year": "1999"}',
            (None, ["a", "b"], 1999),
            "title",
        ),
    ],
)
def test_sidecar_bad_value_costs_only_that_field(
    tmp_path: Path, store: PosterStore, line: str, kept: tuple, dropped: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(GOOD)
    (folder / "sidecar.jsonl").write_text(line + "\n", encoding="utf-8")
    summary = _ingest(store, folder)
    status, title, genres, year, error, raw = _rows(
        store, "status", "title", "genres", "year", "sidecar_error", "sidecar"
    )["a.jpg"]
    assert status == "ok"
    assert (title, genres, year) == kept
    assert error and error.startswith(dropped)
    assert json.loads(raw)["file"] == "a.jpg"  # the record is kept, as valid JSON (no Infinity)
    assert summary.sidecar_problems == [("a.jpg", error)]


def test_sidecar_lines_that_are_not_records_are_skipped_and_listed(
    tmp_path: Path, store: PosterStore
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(GOOD)
    lines = [
        '["an", "array"]',
        '"a string"',
        "42",
        '{"file": "a.jpg", "title": "Fine", "year": 2001}',
        "{broken",
    ]
    (folder / "sidecar.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = _ingest(store, folder)
    assert _rows(store, "status", "title", "year", "sidecar_error")["a.jpg"] == ("ok", "Fine", 2001, None)
    where = {w: p for w, p in summary.sidecar_problems}
    assert set(where) == {"sidecar line 1", "sidecar line 2", "sidecar line 3", "sidecar line 5"}
    assert "array" in where["sidecar line 1"] and "string" in where["sidecar line 2"]
    assert "not valid JSON" in where["sidecar line 5"]


def test_sidecar_csv_that_is_not_utf8(tmp_path: Path, store: PosterStore) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(["a.jpg", "b.jpg"]):
        (folder / name).write_bytes(_save(_poster(30 + i), "JPEG"))
    with open(os.fsencode(folder) + b"/" + NON_UTF8_NAME, "wb") as fh:
        fh.write(_save(_poster(40), "JPEG"))
    csv_bytes = (
        b"file,title,genres,year\n"
        b"a.jpg,Caf\xe9 Noir,drama,1950\n"  # Latin-1 title: dropped, the rest kept
        b"b.jpg,Plain,comedy,1960\n"
        + NON_UTF8_NAME
        + b",Latin Name,western,1970\n"  # matches the file whose name has the same bytes
    )
    (folder / "meta.csv").write_bytes(csv_bytes)
    summary = _ingest(store, folder, sidecar=folder / "meta.csv")
    rows = _rows(store, "status", "title", "genres", "year", "sidecar_error")
    assert rows["a.jpg"][:4] == ("ok", None, ["drama"], 1950) and "UTF-8" in rows["a.jpg"][4]
    assert rows["b.jpg"] == ("ok", "Plain", ["comedy"], 1960, None)
    assert rows[NON_UTF8_SHOWN] == ("ok", "Latin Name", ["western"], 1970, None)
    assert any("not valid UTF-8" in p for _, p in summary.sidecar_problems)


def test_sidecar_that_vanished_before_ingest(tmp_path: Path, store: PosterStore) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(GOOD)
    (folder / "sidecar.jsonl").write_text('{"file": "a.jpg", "title": "T"}\n', encoding="utf-8")
    manifest, _ = plan_batch(store.batches_dir, folder)
    (folder / "sidecar.jsonl").unlink()
    summary = ingest_batch(store.db, store.blobs, manifest)
    assert summary.status_counts["ok"] == 1
    assert "could not be read" in summary.sidecar_problems[0][1]


# --- file names -----------------------------------------------------------------------------


def test_file_name_that_is_not_utf8_is_ingested(tmp_path: Path, store: PosterStore) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/" + NON_UTF8_NAME
    with open(raw, "wb") as fh:
        fh.write(GOOD)
    (folder / "plain.jpg").write_bytes(_save(_poster(2), "JPEG"))
    summary = _ingest(store, folder)
    assert summary.status_counts == {"ok": 2}
    source, original = store.db.query(
        "SELECT source_uri, original_path FROM raw_posters WHERE file_name = ?", [NON_UTF8_SHOWN]
    )[0]
    assert source.endswith("/" + NON_UTF8_SHOWN)
    assert (store.home_path / original).read_bytes() == GOOD
    # The manifest is valid JSON text and names the file exactly: planning again finds nothing new.
    assert plan_batch(store.batches_dir, folder) == (None, 0)


@pytest.mark.parametrize(
    "name", ["new\nline.jpg", "tab\tand\x1besc.jpg", "bidi\u202eoverride.jpg", "cr\rlf.jpg"]
)
def test_control_characters_in_a_name(tmp_path: Path, store: PosterStore, name: str) -> None:
    from poster_assets.defs.metadata import thumbnail_sheet

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / name).write_bytes(GOOD)
    summary = _ingest(store, folder)
    assert _rows(store, "status")[name] == ("ok",)
    sheet = thumbnail_sheet(store.blobs, summary.thumbnails)  # the preview every asset draws
    assert sheet.width > 0


# --- special files --------------------------------------------------------------------------


def test_special_files_get_a_quarantine_row_and_nothing_hangs(tmp_path: Path, store: PosterStore) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(GOOD)
    os.mkfifo(folder / "fifo.jpg")
    os.symlink("loop.jpg", folder / "loop.jpg")
    os.symlink("a.jpg", folder / "b.jpg")
    os.symlink("b.jpg", folder / "a.jpg")
    os.symlink("nowhere.jpg", folder / "dangling.jpg")
    os.symlink("good.jpg", folder / "link_to_good.jpg")
    os.symlink(str(folder / "fifo.jpg"), folder / "link_to_fifo.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "socket.jpg"))
    sock.close()
    summary = _ingest(store, folder)
    rows = _rows(store, "status", "reason")
    assert rows["good.jpg"] == ("ok", None)
    assert rows["link_to_good.jpg"][0] == "duplicate"
    assert "FIFO" in rows["fifo.jpg"][1] and "FIFO" in rows["link_to_fifo.jpg"][1]
    assert "symlink loop" in rows["loop.jpg"][1]
    assert "symlink loop" in rows["a.jpg"][1] and "symlink loop" in rows["b.jpg"][1]
    assert "dangling symlink" in rows["dangling.jpg"][1] and "nowhere.jpg" in rows["dangling.jpg"][1]
    assert "socket" in rows["socket.jpg"][1]
    assert summary.files == len(rows) == 9


def test_symlinked_folder_loop_in_a_recursive_scan(tmp_path: Path, store: PosterStore) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "p.jpg").write_bytes(GOOD)
    os.symlink("..", folder / "sub" / "up")  # a folder loop
    found = scan(folder, recursive=True)
    assert [Path(f.path).name for f in found.files] == ["p.jpg"]
    assert [(Path(s.path).name, s.reason) for s in found.skipped] == [
        ("up", "symlink to a folder: not followed")
    ]
    manifest, _ = plan_batch(store.batches_dir, folder, recursive=True)
    assert manifest.skipped == found.skipped


def _unreadable_scan(folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """``scan`` run by an unprivileged user: as root, in a forked child that drops to nobody
    (root reads a chmod-000 folder anyway, so only another user meets the PermissionError)."""
    if os.geteuid() != 0:
        found = scan(folder, recursive=True)
        return [f.path for f in found.files], [(s.path, s.reason) for s in found.skipped]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            found = scan(folder, recursive=True)
            msg = json.dumps([[f.path for f in found.files], [(s.path, s.reason) for s in found.skipped]])
            os.write(write_end, msg.encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported through the pipe
            os.write(write_end, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    result = json.loads(data)
    assert os.waitstatus_to_exitcode(status) == 0, result
    return result[0], [tuple(s) for s in result[1]]


def test_unreadable_subfolder_is_listed_not_fatal(store: PosterStore) -> None:
    # Not tmp_path: its parents are private to root, and the unprivileged child must reach the folder.
    base = Path(tempfile.mkdtemp(prefix="poster-assets-unreadable-"))
    try:
        base.chmod(0o755)
        folder = base / "in"
        (folder / "locked").mkdir(parents=True)
        (folder / "open").mkdir()
        (folder / "locked" / "hidden.jpg").write_bytes(GOOD)
        (folder / "open" / "seen.jpg").write_bytes(GOOD)
        (folder / "top.jpg").write_bytes(GOOD)
        (folder / "locked").chmod(0)
        files, skipped = _unreadable_scan(folder)
        assert [Path(f).name for f in files] == ["seen.jpg", "top.jpg"]
        assert (
            len(skipped) == 1 and skipped[0][0].endswith("/locked") and "Permission denied" in skipped[0][1]
        )
        if os.geteuid() == 0:
            # What root observes: the chmod-000 folder is read like any other, planning does not fail.
            manifest, _ = plan_batch(store.batches_dir, folder, recursive=True)
            assert sorted(Path(f.path).name for f in manifest.files) == ["hidden.jpg", "seen.jpg", "top.jpg"]
    finally:
        (base / "in" / "locked").chmod(0o755)
        shutil.rmtree(base)


# --- sizes and contents ---------------------------------------------------------------------


def test_huge_sparse_file_is_quarantined_before_it_is_read(tmp_path: Path, store: PosterStore) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(GOOD)
    with open(folder / "disk_image.jpg", "wb") as fh:
        fh.truncate(200 * 2**30)  # 200 GiB, sparse: no disk space, and hours to hash
    t0 = time.perf_counter()
    _ingest(store, folder)
    assert time.perf_counter() - t0 < 60
    rows = store.db.query(
        "SELECT file_name, poster_id, status, reason, file_bytes FROM raw_posters ORDER BY 1"
    )
    (name, pid, status, reason, size), good = rows
    assert (name, status, size) == ("disk_image.jpg", "quarantined", 200 * 2**30)
    assert pid.startswith("too-large-") and "200.0 GiB" in reason and "512.0 MiB" in reason
    assert good[2] == "ok"


def test_file_size_limit_is_configurable(tmp_path: Path, store: PosterStore) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(GOOD)
    _ingest(store, folder, max_file_bytes=len(GOOD) - 1)
    assert "too large" in _rows(store, "reason")["good.jpg"][0]
    assert DEFAULT_MAX_FILE_BYTES == 512 * 2**20 < HUGE_FILE_BYTES


def test_identical_empty_files_are_all_quarantined(tmp_path: Path, store: PosterStore) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (folder / name).write_bytes(b"")
    (folder / "d.jpg").write_bytes(GOOD)
    (folder / "e.jpg").write_bytes(GOOD)
    _ingest(store, folder)
    rows = _rows(store, "status", "reason", "duplicate_of")
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        assert rows[name] == ("quarantined", "empty file (0 bytes)", None)
    assert rows["d.jpg"][0] == "ok" and rows["e.jpg"][0] == "duplicate" and rows["e.jpg"][2].endswith("d.jpg")


def test_png_with_a_corrupt_chunk_crc_is_quarantined(tmp_path: Path, store: PosterStore) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    png = bytearray(_save(_poster(3), "PNG"))
    idat = png.index(b"IDAT")
    png[idat + 4 + int.from_bytes(png[idat - 4 : idat], "big")] ^= 0xFF
    (folder / "bad_crc.png").write_bytes(bytes(png))
    (folder / "good.png").write_bytes(_save(_poster(3), "PNG"))
    _ingest(store, folder)
    rows = _rows(store, "status", "reason")
    assert rows["bad_crc.png"][0] == "quarantined" and "checksum" in rows["bad_crc.png"][1]
    assert rows["good.png"] == ("ok", None)


# --- the whole folder -----------------------------------------------------------------------


def test_extended_bad_inputs_every_file_accounted_for(tmp_path: Path, store: PosterStore) -> None:
    expected = write_bad_inputs(tmp_path / "in", extended=True)
    assert {"fifo.jpg", "symlink_loop.jpg", "dangling_symlink.jpg", NON_UTF8_SHOWN, "new\nline.jpg"} <= set(
        expected
    )
    summary = _ingest(store, tmp_path / "in")
    rows = _rows(store, "status", "sidecar_error")
    assert {name: r[0] for name, r in rows.items()} == expected
    assert summary.new_rows == summary.files == len(expected)
    assert {name: r[1].split()[0] for name, r in rows.items() if r[1]} == SIDECAR_ERRORS
    lines = [w for w, _ in summary.sidecar_problems if w.startswith("sidecar line")]
    assert len(lines) == SIDECAR_BAD_LINES
    # Again: nothing new to plan, and re-running the batch writes nothing.
    assert plan_batch(store.batches_dir, tmp_path / "in") == (None, 0)
    (name,) = [p.stem for p in store.batches_dir.glob("*.json")]
    again = ingest_batch(store.db, store.blobs, BatchManifest.load(store.batches_dir, name))
    assert again.new_rows == 0 and again.already_ingested == len(expected)
    # Writing the folder a second time (special files exist already) works.
    assert write_bad_inputs(tmp_path / "in", extended=True) == expected


@pytest.mark.slow
def test_cli_bad_inputs_then_ingest_accounts_for_every_file(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "bad"
    made = CliRunner().invoke(main, ["bad-inputs", str(folder)])
    assert made.exit_code == 0, made.output
    assert "new\\nline.jpg" in made.output  # names are printed on one line
    out = CliRunner().invoke(main, ["ingest", str(folder)])
    assert out.exit_code == 0, out.output
    assert "quarantined fifo.jpg: not a regular file" in out.output
    assert "quarantined huge_file.jpg: too large" in out.output
    assert "sidecar values dropped for cmyk.jpg: year 99999999999" in out.output
    assert "sidecar line 6: a JSON array" in out.output
    assert "have no row" not in out.output
    expected = write_bad_inputs(tmp_path / "again", extended=True)
    counts = PosterStore(home=str(home)).db.query("SELECT count(*) FROM raw_posters")[0][0]
    assert counts == len(expected)


def test_existing_database_gains_the_sidecar_error_column(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE raw_posters (poster_id VARCHAR NOT NULL, source_uri VARCHAR NOT NULL, "
        "file_name VARCHAR NOT NULL, file_bytes BIGINT NOT NULL, status VARCHAR NOT NULL, reason VARCHAR, "
        "duplicate_of VARCHAR, width INTEGER, height INTEGER, format VARCHAR, source_mode VARCHAR, "
        "frames INTEGER, exif_rotated BOOLEAN, title VARCHAR, genres VARCHAR[], year INTEGER, sidecar JSON, "
        "original_path VARCHAR, thumbnail_path VARCHAR, batch VARCHAR NOT NULL, decoder VARCHAR NOT NULL, "
        "ingested_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (poster_id, source_uri))"
    )
    con.execute(
        "INSERT INTO raw_posters (poster_id, source_uri, file_name, file_bytes, status, batch, decoder, "
        "ingested_at) VALUES ('p', '/x.jpg', 'x.jpg', 1, 'ok', 'b', 'd', now())"
    )
    con.execute("CREATE SCHEMA staging; CREATE VIEW staging.stg AS SELECT * FROM main.raw_posters")
    con.close()
    db = Database(path)
    db.ensure_schema()
    cols = [
        r[0] for r in db.query("SELECT column_name FROM duckdb_columns() WHERE table_name = 'raw_posters'")
    ]
    assert cols[-1] == "sidecar_error"
    assert db.query("SELECT file_name, sidecar_error FROM raw_posters") == [("x.jpg", None)]
