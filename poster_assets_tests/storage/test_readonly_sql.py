"""`poster-assets sql` on a real DuckDB file: reads are bounded in time and memory, so a waiting
writer gets the file; PIVOT is a read; writes and the engine's settings stay out of reach."""

import multiprocessing as mp
import threading
import time
from pathlib import Path

import pytest

from poster_assets.storage.database import Database
from poster_assets.storage.readonly_sql import (
    MAX_TIMEOUT_S,
    QueryTimeoutError,
    ReadOnlySqlError,
    run_readonly,
    sql_timeout_s,
)
from poster_assets.storage.store import DEFAULT_LOCK_TIMEOUT_S

LONG_QUERY = "SELECT count(*) FROM range(1000000000000)"  # hours of counting


@pytest.fixture
def db(tmp_path: Path) -> Database:
    db = Database(tmp_path / "poster_assets.duckdb")
    with db.transaction() as conn:
        conn.executemany(
            "INSERT INTO extractions VALUES (?, ?, 'v1', ?, NULL, 'b', 0, now())",
            [["ocr_text", "p1", "ok"], ["ocr_text", "p2", "failed"], ["depth_maps", "p1", "ok"]],
        )
    return db


def _write_one_row(db_path: str, ready, go, out) -> None:
    """A writer outside Dagster: waits (up to 20 s here) for the file, then writes."""
    db = Database(Path(db_path), lock_timeout_s=20)
    ready.set()
    go.wait(60)
    t0 = time.monotonic()
    with db.transaction() as conn:
        conn.execute("INSERT INTO extractions VALUES ('writer', 'p9', 'v1', 'ok', NULL, 'b', 0, now())")
    out.put(time.monotonic() - t0)


@pytest.mark.slow
def test_a_long_read_is_interrupted_so_a_waiting_writer_gets_the_file(db: Database) -> None:
    ctx = mp.get_context("spawn")
    ready, go, waited = ctx.Event(), ctx.Event(), ctx.Queue()
    writer = ctx.Process(target=_write_one_row, args=(str(db.path), ready, go, waited))
    writer.start()
    assert ready.wait(60)
    outcome: dict = {}

    def read() -> None:
        t0 = time.monotonic()
        try:
            run_readonly(db, LONG_QUERY, timeout_s=2)
        except QueryTimeoutError as exc:
            outcome["error"] = str(exc)
        outcome["seconds"] = time.monotonic() - t0

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)  # the reader holds the file now; the writer asks for it
    go.set()
    reader.join(30)
    writer.join(60)
    assert not reader.is_alive() and outcome["seconds"] < 10
    assert "ran for more than 2 s and was stopped" in outcome["error"]
    assert "--timeout" in outcome["error"] and "POSTER_ASSETS_SQL_TIMEOUT_S" in outcome["error"]
    assert writer.exitcode == 0
    assert 0.5 < waited.get(timeout=5) < 10  # it met the reader, and got the file once it stopped
    assert db.query("SELECT count(*) FROM extractions WHERE asset = 'writer'") == [(1,)]


def test_the_timeout_has_a_default_a_setting_and_a_bound_below_the_writers_lock_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert MAX_TIMEOUT_S < DEFAULT_LOCK_TIMEOUT_S
    monkeypatch.delenv("POSTER_ASSETS_SQL_TIMEOUT_S", raising=False)
    assert sql_timeout_s() == 30
    monkeypatch.setenv("POSTER_ASSETS_SQL_TIMEOUT_S", "5")
    assert sql_timeout_s() == 5 and sql_timeout_s(12) == 12
    with pytest.raises(ReadOnlySqlError, match="at most 50 s"):
        sql_timeout_s(MAX_TIMEOUT_S + 1)
    monkeypatch.setenv("POSTER_ASSETS_SQL_TIMEOUT_S", "soon")
    with pytest.raises(ReadOnlySqlError, match="not a number"):
        sql_timeout_s()


def test_the_timeout_setting_stops_a_read(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTER_ASSETS_SQL_TIMEOUT_S", "1")
    t0 = time.monotonic()
    with pytest.raises(QueryTimeoutError):
        run_readonly(db, LONG_QUERY, timeout_s=None)
    assert time.monotonic() - t0 < 10


def test_a_read_runs_within_a_memory_limit(db: Database) -> None:
    with pytest.raises(ReadOnlySqlError, match="Out of Memory.*POSTER_ASSETS_SQL_MEMORY_LIMIT"):
        run_readonly(db, "SELECT list(range) FROM range(100000000)", memory_limit="64MB")
    with pytest.raises(ReadOnlySqlError, match="not a memory size"):
        run_readonly(db, "SELECT 1", memory_limit="1GB'; SET x = '1")


@pytest.mark.parametrize(
    "query",
    [
        "PIVOT extractions ON status USING count(*) GROUP BY asset ORDER BY asset",
        "SELECT * FROM (PIVOT extractions ON status USING count(*) GROUP BY asset) ORDER BY asset",
        "WITH p AS (PIVOT extractions ON status USING count(*) GROUP BY asset) FROM p ORDER BY asset",
    ],
)
def test_pivot_is_a_read(db: Database, query: str) -> None:
    columns, rows = run_readonly(db, query)
    assert columns == ["asset", "failed", "ok"]
    assert rows == [("depth_maps", 0, 1), ("ocr_text", 1, 1)]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        # Writes and side doors, also when a PIVOT makes DuckDB expand the statement.
        ("CREATE TEMP TABLE t AS PIVOT extractions ON status USING count(*)", "not CREATE"),
        (
            "WITH p AS (PIVOT extractions ON status USING count(*)) INSERT INTO extractions FROM p",
            "not INSERT",
        ),
        ("INSERT INTO extractions SELECT * FROM (PIVOT extractions ON status USING count(*))", "not INSERT"),
        ("COPY (PIVOT extractions ON status USING count(*)) TO 'out.csv'", "not COPY"),
        ("SET VARIABLE x = (SELECT 1 FROM (PIVOT extractions ON status USING count(*)))", "not SET"),
        ("EXPLAIN ANALYZE DELETE FROM extractions", "not DELETE"),
        ("DELETE FROM extractions", "not DELETE"),
        ("ATTACH 'other.duckdb'", "not ATTACH"),
        ("INSTALL httpfs", "not LOAD"),
        ("LOAD httpfs", "not LOAD"),
        ("SET memory_limit = '100GB'", "not SET"),
        ("PRAGMA database_list", "not PRAGMA"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission"),
        # The engine's settings, paths and environment.
        ("SELECT * FROM duckdb_settings()", "not available here"),
        ("SELECT * FROM system.main.duckdb_settings()", "not available here"),
        ('SELECT * FROM "DuckDB_Settings" ()', "not available here"),
        ("SELECT current_setting('memory_limit')", "not available here"),
        ("SELECT * FROM pg_catalog.pg_settings", "not available here"),
        ("SELECT path FROM duckdb_databases()", "not available here"),
        ("SELECT * FROM duckdb_temporary_files()", "not available here"),
        ("SHOW memory_limit", "not for settings"),
        ("SHOW temp_directory", "not for settings"),
        ("SHOW ALL", "not for settings"),
        ("SELECT * FROM query('SELECT * FROM duckdb_settings()')", "runs SQL held in a string"),
    ],
)
def test_writes_and_settings_are_refused(db: Database, query: str, message: str) -> None:
    with pytest.raises(ReadOnlySqlError, match=message):
        run_readonly(db, query)
    assert db.query("SELECT count(*) FROM extractions") == [(3,)]


def test_catalog_reads_still_work(db: Database) -> None:
    assert run_readonly(db, "SHOW TABLES")[1]
    assert run_readonly(db, "DESCRIBE extractions")[1][0][0] == "asset"
    assert run_readonly(db, "EXPLAIN SELECT * FROM extractions")[0] == ["explain_key", "explain_value"]
    # A column may be called query; only the function that runs a string is refused.
    assert run_readonly(db, "SELECT 1 AS query") == (["query"], [(1,)])
