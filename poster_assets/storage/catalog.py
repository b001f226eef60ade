"""The catalog refresh: the lake's segments (``storage.lake``) applied to the DuckDB file.

Each refresh is one transaction that applies every segment the catalog lacks, oldest first,
and records them in ``lake_segments``: idempotent, so any process may run it at any time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb

from poster_assets.storage.database import Database, DatabaseBusyError
from poster_assets.storage.lake import (
    LAKE_TABLES,
    Segment,
    apply_segments,
    export_catalog,
    parquet_rows,
    read_parquet_sql,
    segment_groups,
)
from poster_assets.storage.schema import SCHEMA_SQL

log = logging.getLogger(__name__)

# How long a chunk's write waits for the catalog before leaving its segment to a later refresh.
CHUNK_APPLY_WAIT_S = 2.0


@dataclass
class Refresh:
    segments: int = 0
    rows: int = 0
    migrated: bool = False


def _applied(conn: duckdb.DuckDBPyConnection, batch: str | None = None) -> set[tuple[str, str]]:
    """(batch, segment) of every segment the catalog holds."""
    sql, params = "SELECT batch, segment FROM lake_segments", []
    if batch is not None:
        sql, params = sql + " WHERE batch = ?", [batch]
    return set(conn.execute(sql, params).fetchall())


def refresh_catalog(db: Database, batch: str | None = None, wait_s: float | None = None) -> Refresh:
    """Apply the lake's segments the catalog lacks (of one batch), oldest first: one transaction
    per group of them (``lake.segment_groups``: up to 512 segments and 100k rows), so that a
    refresh after a long busy spell, or a rebuild, stays within the memory limit; an interrupted
    refresh leaves whole groups applied, and the next one goes on. With ``wait_s``, give up
    after that long for the file (``DatabaseBusyError``). A home made before the lake first has
    its rows exported to it."""
    if wait_s is not None:
        db = Database(db.path, wait_s)
    out = Refresh()
    lake = db.lake
    with db.transaction() as conn:
        if not lake.has_format():
            out.migrated = export_catalog(lake, conn)
        done = _applied(conn, batch)
        pending = [s for s in lake.segments(batch) if (s.batch, s.name) not in done]
        groups = list(segment_groups(pending))
        if groups:  # the usual case, a few segments: this same transaction
            out.rows, out.segments = apply_segments(conn, groups[0]), len(groups[0])
    if not lake.has_format():
        lake.write_format()  # after the commit: an export rolled back is redone
    for group in groups[1:]:
        with db.transaction() as conn:
            # Another process may have applied some of them meanwhile.
            done = _applied_of(conn, group)
            todo = [s for s in group if (s.batch, s.name) not in done]
            out.rows += apply_segments(conn, todo)
            out.segments += len(todo)
    if out.segments:
        log.info("catalog: applied %d lake segments (%d rows)", out.segments, out.rows)
    return out


def _applied_of(conn: duckdb.DuckDBPyConnection, segments: Sequence[Segment]) -> set[tuple[str, str]]:
    found = conn.execute(
        "SELECT batch, segment FROM lake_segments WHERE list_contains(?, batch || '/' || segment)",
        [[f"{s.batch}/{s.name}" for s in segments]],
    ).fetchall()
    return set(found)


def try_refresh(db: Database, batch: str) -> bool:
    """After a chunk: apply the batch's segments if the catalog is free within a moment; else
    they wait in the lake (nothing is lost: the step's end or the next refresh applies them)."""
    try:
        refresh_catalog(db, batch, wait_s=min(CHUNK_APPLY_WAIT_S, db.lock_timeout_s))
    except DatabaseBusyError:
        log.info("catalog busy: batch %s's new rows wait in the lake for the next refresh", batch)
        return False
    return True


def rebuild_catalog(db: Database) -> Refresh:
    """Make the catalog's lake tables again from the lake alone: emptied in one transaction,
    then every segment applied as a refresh applies them (a transaction per group; interrupted,
    ``lake refresh`` finishes it). The cache computed from them (``layer_scores``) is dropped;
    ``poster_neighbors`` is left to the next index refresh, which compares it with the index."""
    refresh_catalog(db)  # a home made before the lake exports its rows first
    with db.transaction() as conn:
        # Dropped and made again, not emptied: deleting millions of rows keeps each in the
        # transaction's undo, past the memory limit.
        for table in (*LAKE_TABLES, "layer_scores", "lake_segments"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute(SCHEMA_SQL)
    return refresh_catalog(db)


def unapplied_extractions(db: Database, batch: str, assets: Iterable[str]) -> list[tuple[str, str, str]]:
    """(asset, poster_id, model_version) of the ``extractions`` rows in the batch's segments the
    catalog has not applied yet: work done that a retried step must not redo."""
    segments = [s for s in db.lake.segments(batch) if s.table_file("extractions").exists()]
    if not segments:
        return []
    if db.path.exists():
        with db.connect(read_only=True) as conn:
            try:
                done = {name for _, name in _applied(conn, batch)}
            except duckdb.CatalogException:  # a catalog from before the lake
                done = set()
        segments = [s for s in segments if s.name not in done]
    if not segments:
        return []
    source = read_parquet_sql([s.table_file("extractions") for s in segments])
    with duckdb.connect() as conn:
        return conn.execute(
            f"SELECT asset, poster_id, model_version FROM {source} WHERE list_contains(?, asset)",
            [list(assets)],
        ).fetchall()


@dataclass
class LakeStatus:
    tables: list[tuple[str, int, int]]  # table, rows in the lake, rows in the catalog
    segments: int
    batches: int
    pending: int


def lake_status(db: Database) -> LakeStatus:
    lake = db.lake
    segments = lake.segments()
    with db.connect(read_only=True) as conn:
        try:
            done = _applied(conn)
        except duckdb.CatalogException:  # a catalog from before the lake
            done = set()
        catalog = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in LAKE_TABLES}
    tables = [
        (t, parquet_rows([f for s in segments if (f := s.table_file(t)).exists()]), catalog[t])
        for t in LAKE_TABLES
    ]
    pending = sum((s.batch, s.name) not in done for s in segments)
    return LakeStatus(tables, len(segments), len({s.batch for s in segments}), pending)
