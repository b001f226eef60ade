"""Batches a person can see, retry and abandon: `poster-assets batches` and what `ingest` says
when a folder's files sit in an unfinished batch (real DuckDB, real Dagster, generated posters).

The interruption is a real one: `poster-assets ingest` in a process of its own, killed while
its raw_posters step waits for the database that another process holds open (as a person's
DuckDB shell would), the way a crash or a closed laptop leaves a batch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from poster_assets.cli import main, runs
from poster_assets.defs.partitions import BATCHES, batch_partitions
from poster_assets.demo import generate_corpus
from poster_assets.ingest.batch_state import (
    COMPLETE,
    EXTRACTORS,
    FAILED,
    INGESTED,
    PLANNED,
    RUNNING,
    BatchFacts,
    RunFacts,
    decide_state,
)
from poster_assets.ingest.batches import plan_batch
from poster_assets.storage.store import Store

ASSETS = ("raw_posters", *EXTRACTORS)
# Every table with a poster_id, and the columns that name blob files.
TABLES = (
    "raw_posters",
    "extractions",
    "ocr_text",
    "depth_maps",
    "foreground_masks",
    "layer_masks",
    "foreground_embeddings",
    "poster_neighbors",
    "layer_scores",
)
BLOB_COLUMNS = {
    "raw_posters": ("original_path", "thumbnail_path"),
    "depth_maps": ("depth_path",),
    "foreground_masks": ("mask_path",),
    "layer_masks": ("labels_path",),
}


def cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def listed(state: str | None = None) -> dict[str, dict]:
    out = cli("batches", "list", "--format", "json", *(["--state", state] if state else []))
    assert out.exit_code == 0, out.output
    return {b["batch"]: b for b in json.loads(out.stdout)}


def orphan_blobs(store: Store) -> set[str]:
    """Files under blobs/ that no row names."""
    on_disk = {
        str(p.relative_to(store.home_path)) for p in (store.home_path / "blobs").rglob("*") if p.is_file()
    }
    named: set[str] = set()
    for table, cols in BLOB_COLUMNS.items():
        for col in cols:
            named.update(p for (p,) in store.db.query(f"SELECT {col} FROM {table} WHERE {col} IS NOT NULL"))
    return on_disk - named


@pytest.fixture
def posters(tmp_path: Path) -> Path:
    folder = tmp_path / "posters"
    generate_corpus(folder, n=3, seed=0)
    return folder


# Holds the DuckDB file open for writing, as a person's `duckdb` shell would.
_DB_HOLDER = """
import sys, time
from pathlib import Path
import duckdb
conn = duckdb.connect(sys.argv[1])
Path(sys.argv[2]).touch()
time.sleep(600)
"""


def _step_started(inst: dg.DagsterInstance, step: str) -> bool:
    for record in inst.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        for entry in inst.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START):
            if entry.dagster_event and entry.dagster_event.step_key == step:
                return True
    return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(30)


def interrupted_ingest(folder: Path, tmp_path: Path, *options: str) -> None:
    """`poster-assets ingest FOLDER` in its own process, killed (SIGKILL) while raw_posters
    waits for the database another process holds."""
    store = Store.at()
    store.db.ensure_schema()
    ready = tmp_path / "db-held"
    holder = subprocess.Popen([sys.executable, "-c", _DB_HOLDER, str(store.db_path), str(ready)])
    ingest = subprocess.Popen(
        [sys.executable, "-m", "poster_assets.cli", "ingest", str(folder), *options],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        with dg.DagsterInstance.get() as inst:
            while not (ready.exists() and _step_started(inst, "raw_posters")):
                assert ingest.poll() is None, "ingest ended before it was interrupted"
                assert holder.poll() is None and time.monotonic() < deadline, "raw_posters never started"
                time.sleep(0.2)
    finally:
        _stop(ingest)
        _stop(holder)


def _only_batch(state: str) -> str:
    (name,) = listed(state)
    return name


@pytest.mark.slow
def test_interrupted_batch_is_listed_named_by_ingest_retried_and_abandoned(
    home: Path, posters: Path, tmp_path: Path
) -> None:
    store = Store.at()
    interrupted_ingest(posters, tmp_path)
    batch = _only_batch(FAILED)  # the CLI marked the killed run failed

    table = cli("batches", "list")
    assert table.exit_code == 0, table.output
    assert f"{batch}: failed — raw_posters (interrupted): the process that ran it" in table.output
    assert f"poster-assets batches retry {batch}" in table.output
    facts = listed()[batch]
    assert (facts["files"], facts["rows"], facts["latest_run_status"]) == (3, 0, "failed")

    # Today's bug: "nothing new" and exit 0. Now: the batch, its state and the command that finishes it.
    again = cli("ingest", str(posters))
    assert again.exit_code == 1, again.output
    assert f"3 files in batch {batch}: failed" in again.output
    assert f"`poster-assets batches retry {batch}`" in again.output

    retried = cli("batches", "retry", "--failed", "--raw-only")
    assert retried.exit_code == 0, retried.output
    facts = listed()[batch]
    assert facts["state"] == INGESTED
    assert (facts["ok"], facts["quarantined"], facts["duplicates"]) == (3, 0, 0)
    assert facts["missing_assets"] == list(EXTRACTORS)
    # raw_posters is what was asked without --extract: said, exit 0; with --extract it is undone.
    raw_again = cli("ingest", str(posters))
    assert raw_again.exit_code == 0, raw_again.output
    assert f"in batch {batch}: ingested (extractors not run" in raw_again.output
    assert cli("ingest", str(posters), "--extract").exit_code == 1

    declined = cli("batches", "abandon", batch, input="n\n")
    assert declined.exit_code == 1 and "rows:      raw_posters 3" in declined.output
    assert "files:     6 " in declined.output  # 3 originals, 3 thumbnails
    assert store.db.query("SELECT count(*) FROM raw_posters")[0][0] == 3

    gone = cli("batches", "abandon", batch, "--yes")
    assert gone.exit_code == 0, gone.output
    assert f"abandoned {batch}: 3 rows, 6 files" in gone.output
    for t in TABLES:
        assert store.db.query(f"SELECT count(*) FROM {t}")[0][0] == 0, t
    assert not [p for p in (home / "blobs").rglob("*") if p.is_file()], "no file may outlive its rows"
    assert not (store.batches_dir / f"{batch}.json").exists()
    with dg.DagsterInstance.get() as inst:
        assert batch not in inst.get_dynamic_partitions(BATCHES)
    assert listed() == {}

    # Its files are new again.
    fresh = cli("ingest", str(posters))
    assert fresh.exit_code == 0, fresh.output
    assert "3 ok" in fresh.output


def test_a_batch_that_never_ran_is_planned_and_retry_registers_it(home: Path, posters: Path) -> None:
    # The process stopped between writing the manifest and adding the partition.
    store = Store.at()
    manifest, _ = plan_batch(store.batches_dir, posters, prefix="cli")
    manifest.save(store.batches_dir)
    facts = listed()[manifest.batch]
    assert facts["state"] == PLANNED and "no partition in Dagster" in facts["note"]

    out = cli("ingest", str(posters))
    assert out.exit_code == 1, out.output
    assert f"in batch {manifest.batch}: planned" in out.output
    assert f"poster-assets batches retry {manifest.batch}" in out.output
    assert "`poster-assets run`" not in out.output  # `run` only knows registered partitions

    done = cli("batches", "retry", manifest.batch, "--raw-only")
    assert done.exit_code == 0, done.output
    assert "added its missing Dagster partition" in done.output
    assert listed()[manifest.batch]["state"] == INGESTED


def test_retry_and_abandon_refuse_unknown_batches(home: Path) -> None:
    for args in (["retry", "cli-nope"], ["abandon", "cli-nope", "--yes"]):
        out = cli("batches", *args)
        assert out.exit_code == 1 and "no batch named 'cli-nope'" in out.output
    assert cli("batches", "retry").exit_code == 2  # neither a batch nor --failed


def _fake_extraction(store: Store, batch: str, poster_id: str) -> str:
    """Rows every extractor would write for one poster, with a depth file."""
    path = store.blobs.write_bytes("depth/test-v1", poster_id, ".png", b"depth")
    with store.db.transaction() as conn:
        for asset in EXTRACTORS:
            conn.execute(
                "INSERT INTO extractions VALUES (?, ?, 'test-v1', 'ok', NULL, ?, 0.1, now())",
                [asset, poster_id, batch],
            )
        conn.execute(
            "INSERT INTO depth_maps VALUES (?, 'test-v1', ?, 2, 2, 0, 1, 0.5, "
            "[0.0 for _ in range(32)], [0.5])",
            [poster_id, path],
        )
        conn.execute(
            "INSERT INTO ocr_text VALUES (?, 'test-v1', 0, 'TITLE', 0.9, [0,0,1,0,1,1,0,1], [0,0,1,1])",
            [poster_id],
        )
        conn.execute(
            "INSERT INTO foreground_embeddings VALUES (?, 'poster', 'test-v1', 2, [0.6, 0.8])", [poster_id]
        )
    return path


@pytest.mark.slow
def test_abandon_keeps_what_another_batch_holds(home: Path, posters: Path, tmp_path: Path) -> None:
    store = Store.at()
    assert cli("ingest", str(posters)).exit_code == 0
    (first,) = listed()
    # A second folder: a copy of one poster of the first (a duplicate) and a poster of its own.
    other = tmp_path / "other"
    other.mkdir()
    shared_file, lone_file, _ = sorted(p for p in posters.iterdir() if p.suffix in (".jpg", ".png"))
    shutil.copy(shared_file, other / "copy.jpg")
    noise = np.random.default_rng(0).integers(0, 255, (450, 300, 3), dtype=np.uint8)
    Image.fromarray(noise).save(other / "own.jpg", quality=90)
    assert cli("ingest", str(other)).exit_code == 0
    (second,) = set(listed()) - {first}
    ids = dict(store.db.query("SELECT file_name, poster_id FROM raw_posters"))
    shared, lone, own = ids[shared_file.name], ids[lone_file.name], ids["own.jpg"]
    assert ids["copy.jpg"] == shared

    files = {pid: _fake_extraction(store, first, pid) for pid in (shared, lone)}
    files[own] = _fake_extraction(store, second, own)
    with store.db.transaction() as conn:
        conn.executemany(
            "INSERT INTO poster_neighbors VALUES (?, 'poster', 'test-v1', ?, ?, 0.9)",
            [[shared, 1, lone], [lone, 1, shared], [own, 1, lone], [own, 2, shared]],
        )
    # Progress counts records at the current model version, which test-v1 is not.
    assert listed()[first]["extracted"]["depth_maps"] == 0

    out = cli("batches", "abandon", first, "--yes")
    assert out.exit_code == 0, out.output
    assert "kept: the extracted values of 1 poster(s) that another batch also holds" in out.output

    assert store.db.query("SELECT count(*) FROM raw_posters WHERE batch = ?", [first]) == [(0,)]
    assert store.db.query("SELECT count(*) FROM raw_posters WHERE batch = ?", [second]) == [(2,)]
    for table in ("extractions", "ocr_text", "depth_maps", "foreground_embeddings"):
        kept = {pid for (pid,) in store.db.query(f"SELECT DISTINCT poster_id FROM {table}")}
        assert kept == {shared, own}, table
    # No neighbour row names the abandoned poster, either way round.
    assert store.db.query("SELECT poster_id, neighbor_id FROM poster_neighbors") == [(own, shared)]
    assert not store.blobs.abspath(files[lone]).exists()
    assert store.blobs.abspath(files[shared]).exists() and store.blobs.abspath(files[own]).exists()
    assert orphan_blobs(store) == set()


def test_stale_temporaries_are_swept_before_a_run(home: Path) -> None:
    stale = home / "indexes" / "poster" / ".tmp-k3j2"
    stale.mkdir(parents=True)
    (stale / "index.faiss").write_bytes(b"x" * 2_000_000)
    fresh = home / "indexes" / "poster" / ".tmp-live"
    fresh.mkdir()
    (fresh / "index.faiss").write_bytes(b"y")
    past = time.time() - 2 * 3600
    for p in (stale / "index.faiss", stale):
        os.utime(p, (past, past))

    out = cli("batches", "list")
    assert out.exit_code == 0, out.output
    assert "removed 1 temporary leftover(s)" in out.output and "(2.0 MB" in out.output
    assert not stale.exists() and fresh.exists()


def test_a_failed_step_is_named_with_the_error_that_stopped_it(home: Path, posters: Path) -> None:
    store = Store.at()
    manifest, _ = plan_batch(store.batches_dir, posters, prefix="cli")

    @dg.asset(partitions_def=batch_partitions, name="raw_posters")
    def failing() -> None:
        raise NotADirectoryError(20, "Not a directory", "blobs/thumbs")

    with runs.instance() as inst:
        runs.register_batch(inst, store, manifest)
        result = dg.materialize([failing], partition_key=manifest.batch, instance=inst, raise_on_error=False)
        assert not result.success
    facts = listed()[manifest.batch]
    assert facts["state"] == FAILED
    assert facts["note"] == "raw_posters: NotADirectoryError: [Errno 20] Not a directory: 'blobs/thumbs'"


def _state(run: RunFacts, rows: int = 0) -> str:
    facts = BatchFacts("b", has_manifest=True, files=2, rows=rows, ok=rows)
    return decide_state(facts, run, ASSETS).state


def test_state_comes_from_the_latest_run_then_the_materializations() -> None:
    everything = frozenset(ASSETS)
    assert _state(RunFacts()) == PLANNED
    assert _state(RunFacts(run_id="r", run_status="succeeded", materialized=frozenset({"raw_posters"}))) == (
        INGESTED
    )
    # raw_posters materialized without a row (every file was in the database already) is ingested too.
    assert (
        _state(RunFacts(run_status="succeeded", materialized=frozenset({"raw_posters"})), rows=0) == INGESTED
    )
    assert _state(RunFacts(run_status="succeeded", materialized=everything), rows=2) == COMPLETE
    # The latest run decides over what earlier runs materialized.
    assert _state(RunFacts(run_status="failed", materialized=everything), rows=2) == FAILED
    assert _state(RunFacts(run_status="running", materialized=everything), rows=2) == RUNNING


@pytest.mark.slow
def test_retry_completes_an_interrupted_batch_and_abandon_removes_every_row_and_file(
    home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "two"
    generate_corpus(folder, n=2, seed=1)
    store = Store.at()
    interrupted_ingest(folder, tmp_path, "--extract")
    batch = _only_batch(FAILED)

    done = cli("batches", "retry", batch)
    assert done.exit_code == 0, done.output
    facts = listed()[batch]
    assert facts["state"] == COMPLETE, facts
    assert facts["extracted"] == dict.fromkeys(EXTRACTORS, 2)
    again = cli("ingest", str(folder), "--extract")
    assert again.exit_code == 0 and f"in batch {batch}: complete" in again.output
    with runs.instance() as inst:
        assert runs.pending_batches(inst) == []

    gone = cli("batches", "abandon", batch, "--yes")
    assert gone.exit_code == 0, gone.output
    for t in TABLES:
        assert store.db.query(f"SELECT count(*) FROM {t}")[0][0] == 0, t
    assert not [p for p in (home / "blobs").rglob("*") if p.is_file()]
