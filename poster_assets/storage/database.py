"""DuckDB access that waits for other processes instead of failing.

DuckDB lets one process at a time open a file for writing. Inside Dagster the writing assets
share the ``poster_db`` concurrency pool (limit 1 in the instance config the project ships), so
they never meet; readers (``poster-assets sql``, search, checks) and the CLI outside Dagster can
still find the file held, so every access opens a short-lived connection and retries briefly
while another process holds it. Heavy work (decoding, inference) happens before a connection
is opened; a connection only lives for one transaction. A burst of accesses (a step's facts and
previews) shares one DuckDB instance (``Database.session``): the first connection to a file in a
process costs ~20 ms of CPU, the next ones on the open instance ~0.05 ms.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from poster_assets.storage.lake import LAKE_DIR, Lake
from poster_assets.storage.schema import SCHEMA_SQL

log = logging.getLogger(__name__)

MEMORY_ENV = "POSTER_ASSETS_DB_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "2GB"
MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)", re.IGNORECASE)

# Files whose schema this process has applied: the DDL runs once per file, not on every write.
_schema_ready: set[Path] = set()
# This thread's open sessions (``Database.session``): resolved path -> whether read-only.
_sessions = threading.local()


class DatabaseBusyError(RuntimeError):
    """Another process held the DuckDB write lock for longer than we were willing to wait."""


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    """Another process holds the file, or another thread of this one holds it in the other mode
    (a process has one DuckDB instance per file, read-only or not)."""
    text = str(exc).lower()
    return ("lock" in text and ("conflicting" in text or "could not set" in text)) or (
        "different configuration" in text
    )


def _held() -> dict[Path, bool]:
    if not hasattr(_sessions, "held"):
        _sessions.held = {}
    return _sessions.held


def is_out_of_memory(exc: duckdb.Error) -> bool:
    """DuckDB hit its memory limit (at a commit it says so in a TransactionException)."""
    text = str(exc)
    return (
        isinstance(exc, duckdb.OutOfMemoryException)
        or "failed to allocate" in text
        or "failed to pin" in text
    )


def memory_limit() -> str:
    """DuckDB's memory in this process: ``$POSTER_ASSETS_DB_MEMORY_LIMIT``, else 2GB. DuckDB's own
    default is 80 % of RAM, and it keeps what it scanned cached up to that: hashing the vectors
    of a million posters (4.7 GB) took a process to 5.1 GiB; within 1GB, to 1.1 GiB for 1.16x the
    time. Larger work spills to disk."""
    value = os.environ.get(MEMORY_ENV, "").strip() or DEFAULT_MEMORY_LIMIT
    if not MEMORY_SIZE.fullmatch(value):
        raise ValueError(f"{MEMORY_ENV}={value!r} is not a memory size such as 512MB or 4GB")
    return value


class Database:
    def __init__(self, path: Path, lock_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s

    @property
    def lake(self) -> Lake:
        """The Parquet segments this file is the catalog of (``storage.lake``), beside it."""
        return Lake(self.path.parent / LAKE_DIR)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection that waits (with jittered backoff) for the file lock."""
        if read_only and not self.path.exists():
            raise FileNotFoundError(
                f"No poster database at {self.path}. Ingest something first "
                "(`poster-assets ingest DIR` or `make demo`), or set POSTER_ASSETS_HOME."
            )
        key = self.path.resolve()
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # made anew (lost, or rebuilt from the lake): no schema yet
                _schema_ready.discard(key)
        mode = read_only
        if (held := _held().get(key)) is not None:
            if held and not read_only:
                raise RuntimeError(f"a write to {self.path} inside a read-only session of it")
            mode = held  # a read in a read-write session shares its instance
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                conn = duckdb.connect(str(self.path), read_only=mode)
                break
            except duckdb.Error as exc:
                if not _is_lock_conflict(exc):
                    raise
                if time.monotonic() > deadline:
                    raise DatabaseBusyError(
                        f"{self.path} stayed locked by another process for {self.lock_timeout_s:.0f} s: {exc}"
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
        try:
            conn.execute(f"SET memory_limit = '{memory_limit()}'")
            if not mode and key not in _schema_ready:
                conn.execute(SCHEMA_SQL)
                _schema_ready.add(key)
            yield conn
        finally:
            conn.close()

    @contextmanager
    def session(self, read_only: bool = True) -> Iterator[None]:
        """Keep the file's DuckDB instance open for the block: every connection this thread
        opens in it (``query``, ``connect``, ``transaction``) then reuses it instead of building
        a new one. The file's lock is held for the whole block (shared when ``read_only``,
        which makes a write in it an error), so it is for a burst of accesses, not for the work
        between them. Sessions nest; an inner one may not ask for more than the outer gives."""
        held, key = _held(), self.path.resolve()
        if key in held:
            if held[key] and not read_only:
                raise RuntimeError(f"a read-write session of {self.path} inside a read-only one")
            yield
            return
        with self.connect(read_only=read_only):
            held[key] = read_only
            try:
                yield
            finally:
                del held[key]

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing writes: a crash or an exception before COMMIT leaves no rows."""
        with self.connect() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params: list | tuple | None = None) -> list[tuple]:
        """Read rows; waits for writers like every other access."""
        with self.connect(read_only=True) as conn:
            return conn.execute(sql, params or []).fetchall()

    def ensure_schema(self) -> None:
        with self.connect():
            pass
