import multiprocessing as mp
import threading
import time
from pathlib import Path

import duckdb
import pytest

from poster_assets.defs.resources import PosterStore
from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.ingest.batches import plan_batch
from poster_assets.ingest.ingest import ingest_batch
from poster_assets.storage.database import DEFAULT_MEMORY_LIMIT, MEMORY_ENV, Database


def hold_write_lock(db_path: str, held: mp.Event, seconds: float) -> None:
    """Hold the write lock for ``seconds`` (in a spawned process), with one row written."""
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
    holder = ctx.Process(target=hold_write_lock, args=(str(store.db_path), held, 2.0))
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
    victim = ctx.Process(target=hold_write_lock, args=(str(store.db_path), held, 30.0))
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
    holder = ctx.Process(target=hold_write_lock, args=(str(store.db_path), held, 3.0))
    holder.start()
    assert held.wait(60)
    with (
        pytest.raises(DatabaseBusyError, match="locked by another process"),
        Database(store.db_path, lock_timeout_s=0.3).connect(),
    ):
        pass
    holder.join(30)


def _duckdb_says(limit: str) -> str:
    with duckdb.connect() as conn:
        conn.execute(f"SET memory_limit = '{limit}'")
        return conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]


@pytest.mark.parametrize("read_only", [False, True])
def test_connections_keep_duckdb_within_the_memory_limit(
    store: PosterStore, monkeypatch: pytest.MonkeyPatch, read_only: bool
) -> None:
    store.db.ensure_schema()
    query = "SELECT current_setting('memory_limit')"
    with store.db.connect(read_only=read_only) as conn:  # DuckDB's own default would be 80 % of RAM
        assert conn.execute(query).fetchone()[0] == _duckdb_says(DEFAULT_MEMORY_LIMIT)
    monkeypatch.setenv(MEMORY_ENV, "512MB")
    with store.db.connect(read_only=read_only) as conn:
        assert conn.execute(query).fetchone()[0] == _duckdb_says("512MB")
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(ValueError, match="POSTER_ASSETS_DB_MEMORY_LIMIT='lots' is not a memory size"):
        store.db.query("SELECT 1")


def _threads_setting(db: Database) -> str:
    return db.query("SELECT current_setting('threads')")[0][0]


def test_a_session_shares_one_duckdb_instance_and_then_lets_go(store: PosterStore) -> None:
    store.db.ensure_schema()
    default = _threads_setting(store.db)
    with store.db.session():
        # A global setting lives in the instance: the next connections in the session see it.
        with store.db.connect(read_only=True) as conn:
            conn.execute("SET GLOBAL threads = 1")
        assert _threads_setting(store.db) == 1
        with store.db.session():  # nested: still the same instance
            assert _threads_setting(store.db) == 1
        with pytest.raises(RuntimeError, match="inside a read-only session"), store.db.transaction():
            pass
    assert _threads_setting(store.db) == default  # closed with the session
    # Another process can write once the session is over.
    ctx = mp.get_context("spawn")
    held = ctx.Event()
    writer = ctx.Process(target=hold_write_lock, args=(str(store.db_path), held, 0.0))
    writer.start()
    writer.join(60)
    assert writer.exitcode == 0
    with store.db.session(read_only=False):
        with store.db.transaction() as conn:  # a read-write session takes writes and reads
            conn.execute("DELETE FROM extractions")  # the writer's one row
        assert store.db.query("SELECT count(*) FROM extractions")[0][0] == 0


def test_a_write_from_another_thread_waits_for_a_read_only_session(store: PosterStore) -> None:
    store.db.ensure_schema()
    done: list[float] = []

    def write() -> None:
        with store.db.transaction() as conn:
            conn.execute("INSERT INTO extractions VALUES ('t', 'x', 'v', 'ok', NULL, 'b', 0, now())")
        done.append(time.monotonic())

    with store.db.session():
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.5)
        assert not done  # DuckDB holds the file read-only in this process: the writer retries
        closed = time.monotonic()
    writer.join(30)
    assert done and done[0] >= closed
    assert store.db.query("SELECT count(*) FROM extractions")[0][0] == 1
