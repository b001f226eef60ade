import multiprocessing as mp
import time
from pathlib import Path

import pytest

from poster_assets.defs.resources import PosterStore
from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.ingest.batches import plan_batch
from poster_assets.ingest.ingest import ingest_batch
from poster_assets.storage.database import Database


def _hold_write_lock(db_path: str, held: mp.Event, seconds: float) -> None:
    db = Database(Path(db_path))
    with db.transaction() as conn:
        conn.execute("INSERT INTO extractions VALUES ('lock-holder', 'x', 'v', 'ok', NULL, 'b', 0, now())")
        held.set()
        time.sleep(seconds)


def _ingest(home: str, folder: str) -> int:
    store = PosterStore(home=home)
    manifest, _ = plan_batch(store.batches_dir, Path(folder))
    return ingest_batch(store.db, store.blobs, manifest).new_rows


@pytest.mark.slow
def test_second_writer_waits_instead_of_failing(tmp_path: Path, store: PosterStore) -> None:
    store.db.ensure_schema()
    write_bad_inputs(tmp_path / "in")
    ctx = mp.get_context("spawn")
    held = ctx.Event()
    holder = ctx.Process(target=_hold_write_lock, args=(str(store.db_path), held, 2.0))
    holder.start()
    assert held.wait(60)
    t0 = time.monotonic()
    with ctx.Pool(1) as pool:
        new_rows = pool.apply(_ingest, (str(store.home_path), str(tmp_path / "in")))
    waited = time.monotonic() - t0
    holder.join(30)
    assert holder.exitcode == 0
    assert new_rows == 16
    assert store.db.query("SELECT count(*) FROM extractions")[0][0] == 1
    assert waited > 0.5  # it really met the lock


def test_killed_writer_leaves_no_partial_rows(tmp_path: Path, store: PosterStore) -> None:
    store.db.ensure_schema()
    ctx = mp.get_context("spawn")
    held = ctx.Event()
    victim = ctx.Process(target=_hold_write_lock, args=(str(store.db_path), held, 30.0))
    victim.start()
    assert held.wait(60)
    victim.kill()
    victim.join(10)
    assert store.db.query("SELECT count(*) FROM extractions")[0][0] == 0


@pytest.mark.slow
def test_busy_database_error_is_clear(tmp_path: Path, store: PosterStore) -> None:
    from poster_assets.storage.database import DatabaseBusyError

    store.db.ensure_schema()
    ctx = mp.get_context("spawn")
    held = ctx.Event()
    holder = ctx.Process(target=_hold_write_lock, args=(str(store.db_path), held, 3.0))
    holder.start()
    assert held.wait(60)
    with (
        pytest.raises(DatabaseBusyError, match="locked by another process"),
        Database(store.db_path, lock_timeout_s=0.3).connect(),
    ):
        pass
    holder.join(30)
