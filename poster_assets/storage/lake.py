"""The lake: what the batch steps write, as Parquet files under ``lake/``, and the catalog
refresh that brings them into the DuckDB file.

A batch step never writes the DuckDB file while it computes. Each chunk it finishes becomes a
*segment*: a folder ``lake/batch=<batch>/<segment>/`` holding one ``<table>.parquet`` per table
it wrote and ``segment.json`` (which rows it supersedes). The folder is filled under a ``.tmp-*``
name and renamed into place (``files.atomic_dir``), so a killed worker leaves either the whole
segment or a temporary no reader looks at (swept like every other), on a local disk or a shared
filesystem alike.

The DuckDB file is the catalog and query layer: its tables are the lake's segments applied in
order (``refresh_catalog``), each in one short transaction that also records the segment in
``lake_segments``, so applying is idempotent and any process may do it. A worker that finds the
file busy keeps going; its segments wait in the lake for the next refresh (its own next chunk,
the end of its step, dbt, the index, ``poster-assets lake refresh``). dbt, ``poster-assets sql``
and search read the catalog as before.

Segments are kept: the lake is the record, and ``rebuild_catalog`` makes the catalog's tables
again from it. Removing rows (gc, abandoning a batch) rewrites the segment files that hold them
(``delete_rows``), each under a temporary name and renamed.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import duckdb

from poster_assets.storage.columns import table_columns
from poster_assets.storage.files import TEMP_PREFIX, atomic_dir
from poster_assets.storage.schema import DERIVED_TABLES, SCHEMA_SQL

log = logging.getLogger(__name__)

LAKE_DIR = "lake"
# The tables batch steps write, in the order a segment's files are applied. The catalog's
# other tables (poster_neighbors, current_versions, layer_scores) are written by corpus steps
# that hold the catalog anyway, or are caches.
LAKE_TABLES = (
    "raw_posters",
    "ocr_text",
    "depth_maps",
    "foreground_masks",
    "layer_masks",
    "foreground_embeddings",
    "extractions",
)
SEGMENT_FILE = "segment.json"
APPLY_GROUP = 512  # segments applied by one set of statements
APPLY_GROUP_ROWS = 100_000  # ... and their rows: 1,280-float vectors among them
# Written once the lake holds everything the catalog held when the lake began: a home made
# before the lake has its rows exported on the first refresh (``export_catalog``).
FORMAT_FILE = "FORMAT.json"
LAKE_FORMAT = 1
# Sorts before every timestamped segment: the rows a home held before it had a lake.
MIGRATED_SEGMENT = "00000000T000000000000Z-migrated"

Rows = Mapping[str, Sequence[Mapping[str, Any]]]  # table -> rows


@dataclass(frozen=True)
class Replace:
    """Rows a segment supersedes before its own go in: ``table``'s rows at ``model_version`` of
    ``poster_ids`` (a poster redone with fewer OCR lines must not keep the old extra lines), and
    the rows of the tables derived from them (``DERIVED_TABLES``)."""

    table: str
    model_version: str
    poster_ids: list[str]


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def read_parquet_sql(paths: Sequence[Path], options: str = "") -> str:
    """``read_parquet`` over ``paths``, quoted for SQL. Not as Hive partitions: the ``batch=``
    folder would add a ``batch`` column to every table."""
    extra = f", {options}" if options else ""
    return f"read_parquet([{', '.join(map(_sql_path, paths))}], hive_partitioning = false{extra})"


def batch_dir_name(batch: str) -> str:
    return "batch=" + quote(batch, safe="")


def _segment_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def parquet_rows(paths: Sequence[Path]) -> int:
    """Rows in the Parquet files, from their footers."""
    if not paths:
        return 0
    with duckdb.connect() as conn:
        (n,) = conn.execute(
            f"SELECT sum(num_rows) FROM parquet_file_metadata([{', '.join(map(_sql_path, paths))}])"
        ).fetchone()
    return int(n or 0)


@dataclass(frozen=True)
class Segment:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def batch(self) -> str:
        return unquote(self.path.parent.name.removeprefix("batch="))

    @functools.cached_property
    def meta(self) -> dict[str, Any]:
        """``segment.json``, read once: grouping and applying both need it."""
        return json.loads((self.path / SEGMENT_FILE).read_text())

    def table_file(self, table: str) -> Path:
        return self.path / f"{table}.parquet"


class Lake:
    """The ``lake/`` folder of a home."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def batch_dir(self, batch: str) -> Path:
        return self.root / batch_dir_name(batch)

    def write_segment(self, batch: str, tables: Rows, replaces: Sequence[Replace] = ()) -> Segment:
        """One segment of ``tables``' rows for ``batch``: typed and checked by the catalog's own
        schema (an in-memory DuckDB), written into a ``.tmp-*`` folder and renamed into place."""
        target = self.batch_dir(batch) / f"{_segment_stamp()}-{uuid.uuid4().hex[:12]}"
        counts: dict[str, int] = {}
        with atomic_dir(target) as tmp, duckdb.connect() as conn:
            conn.execute(SCHEMA_SQL)
            for table in LAKE_TABLES:
                rows = tables.get(table) or []
                if not rows:
                    continue
                cols = list(rows[0])
                # Column-wise, one statement: executemany costs ~10x more for 48 vectors.
                conn.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) SELECT "
                    + ", ".join(f"unnest(${i + 1})" for i in range(len(cols))),
                    [[r[c] for r in rows] for c in cols],
                )
                conn.execute(f"COPY {table} TO {_sql_path(tmp / f'{table}.parquet')} (FORMAT parquet)")
                counts[table] = len(rows)
            meta = {
                "batch": batch,
                "tables": counts,
                "replaces": [asdict(r) for r in replaces],
                "written_at": dt.datetime.now(dt.UTC).isoformat(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
            (tmp / SEGMENT_FILE).write_text(json.dumps(meta))
        return Segment(target)

    def segments(self, batch: str | None = None) -> list[Segment]:
        """Every complete segment (of one batch), oldest first."""
        dirs = [self.batch_dir(batch)] if batch is not None else self._batch_dirs()
        found = [
            Segment(Path(entry.path))
            for d in dirs
            if d.is_dir()
            for entry in os.scandir(d)
            if entry.is_dir() and not entry.name.startswith(".")
        ]
        return sorted(found, key=lambda s: (s.name, s.batch))

    def _batch_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [Path(e.path) for e in os.scandir(self.root) if e.is_dir() and e.name.startswith("batch=")]

    def table_files(self, table: str, batch: str | None = None) -> list[Path]:
        return [f for s in self.segments(batch) if (f := s.table_file(table)).exists()]

    def delete_rows(self, table: str, where: str, params: Sequence[Any], batch: str | None = None) -> int:
        """Rewrite every segment file of ``table`` that has rows matching ``where`` without them
        (each under a temporary name, renamed); a file left empty is removed. Returns the rows
        removed."""
        removed = 0
        with duckdb.connect() as conn:
            for path in self.table_files(table, batch):
                source = read_parquet_sql([path])
                (n,) = conn.execute(f"SELECT count(*) FROM {source} WHERE {where}", list(params)).fetchone()
                if not n:
                    continue
                (left,) = conn.execute(f"SELECT count(*) FROM {source}").fetchone()
                if n == left:
                    path.unlink()
                else:
                    tmp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")
                    kept = f"SELECT * FROM {source} WHERE NOT ({where})"
                    conn.execute(f"COPY ({kept}) TO {_sql_path(tmp)} (FORMAT parquet)", list(params))
                    os.replace(tmp, path)
                removed += n
        return removed

    def remove_batch(self, batch: str) -> None:
        """Drop a batch's folder once nothing in it is kept (``abandon``)."""
        shutil.rmtree(self.batch_dir(batch), ignore_errors=True)

    def has_format(self) -> bool:
        return (self.root / FORMAT_FILE).exists()

    def write_format(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / FORMAT_FILE).write_text(json.dumps({"format": LAKE_FORMAT, "tables": list(LAKE_TABLES)}))


# A segment's ok poster whose bytes already have an ok row under another path becomes a
# duplicate of that row: two batches racing on the same bytes, the one applied second.
_INSERT_POSTERS = """
INSERT INTO raw_posters BY NAME
SELECT s.* EXCLUDE (first_ok, dup) REPLACE (
    CASE WHEN dup THEN 'duplicate' ELSE s.status END AS status,
    CASE WHEN dup THEN 'same bytes as ' || parse_filename(first_ok) ELSE s.reason END AS reason,
    CASE WHEN dup THEN first_ok ELSE s.duplicate_of END AS duplicate_of
)
FROM (
    SELECT s.*, o.first_ok, coalesce(s.status = 'ok' AND o.first_ok <> s.source_uri, false) AS dup
    FROM {source} s
    LEFT JOIN (
        SELECT poster_id, min(source_uri) AS first_ok FROM raw_posters
        WHERE status = 'ok' AND poster_id IN (SELECT poster_id FROM {source})
        GROUP BY poster_id
    ) o ON o.poster_id = s.poster_id
) s
ON CONFLICT DO NOTHING
"""


def apply_segments(conn: duckdb.DuckDBPyConnection, segments: Sequence[Segment]) -> int:
    """Apply ``segments`` (oldest first) inside the caller's transaction, with the result of
    applying them one after another: a later segment's rows replace an earlier one's of the
    same key, and its replaced rows (a redone poster's, at that version) drop the earlier
    segments' too. A few statements per table, however many segments: a refresh after a busy
    hour, or a rebuild of a whole lake, costs about what one segment does. Returns the rows."""
    # In groups, in order: the statements name every file, and a group's rows pass through a
    # temporary table, which must fit in the connection's memory limit.
    return sum(_apply_group(conn, group) for group in segment_groups(segments))


def segment_groups(segments: Sequence[Segment]) -> Iterator[Sequence[Segment]]:
    """Consecutive runs of at most ``APPLY_GROUP`` segments and ``APPLY_GROUP_ROWS`` rows (a
    larger segment alone)."""
    start, rows = 0, 0
    for i, segment in enumerate(segments):
        n = sum(segment.meta["tables"].values())
        if i > start and (i - start >= APPLY_GROUP or rows + n > APPLY_GROUP_ROWS):
            yield segments[start:i]
            start, rows = i, 0
        rows += n
    if start < len(segments):
        yield segments[start:]


def _apply_group(conn: duckdb.DuckDBPyConnection, segments: Sequence[Segment]) -> int:
    metas = [s.meta for s in segments]
    replaces = [(i, r) for i, meta in enumerate(metas) for r in meta["replaces"]]
    for _, r in replaces:
        conn.execute(
            f"DELETE FROM {r['table']} WHERE model_version = ? AND poster_id IN ?",
            [r["model_version"], r["poster_ids"]],
        )
        for derived in DERIVED_TABLES.get(r["table"], ()):
            conn.execute(f"DELETE FROM {derived} WHERE poster_id IN ?", [r["poster_ids"]])
    rows = 0
    for table in LAKE_TABLES:
        held = [
            (i, path)
            for i, (segment, meta) in enumerate(zip(segments, metas, strict=True))
            if table in meta["tables"] and (path := segment.table_file(table)).exists()  # gc may empty it
        ]
        if not held:
            continue
        rows += sum(metas[i]["tables"][table] for i, _ in held)
        if table == "raw_posters":  # which copy is the duplicate depends on the order: one by one
            for _, path in held:
                conn.execute(_INSERT_POSTERS.format(source=read_parquet_sql([path])))
            continue
        if len(held) == 1:  # its rows are unique by key already: straight from the file
            _replace_by_key(conn, table, read_parquet_sql([held[0][1]]))
        else:
            _insert_latest(conn, table, held, [(i, r) for i, r in replaces if r["table"] == table])
    conn.executemany(
        "INSERT OR REPLACE INTO lake_segments VALUES (?, ?, ?, ?)",
        [
            [s.name, s.batch, sum(m["tables"].values()), dt.datetime.now(dt.UTC)]
            for s, m in zip(segments, metas, strict=True)
        ],
    )
    return rows


def _replace_by_key(conn: duckdb.DuckDBPyConnection, table: str, source: str) -> None:
    """Insert ``source``'s rows (unique by key) into ``table`` in place of its rows of those keys."""
    key = table_columns(table).primary_key
    match = " AND ".join(f"{table}.{c} = k.{c}" for c in key)
    conn.execute(f"DELETE FROM {table} USING (SELECT {', '.join(key)} FROM {source}) AS k WHERE {match}")
    conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {source}")


def _insert_latest(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    held: Sequence[tuple[int, Path]],
    replaces: Sequence[tuple[int, Mapping[str, Any]]],
) -> None:
    """Replace ``table``'s rows by the segments' latest row of each key that no later segment's
    replace covers (``held``: (segment order, file))."""
    key = ", ".join(table_columns(table).primary_key)
    conn.execute("CREATE OR REPLACE TEMP TABLE _files (filename VARCHAR, segment INTEGER)")
    conn.executemany("INSERT INTO _files VALUES (?, ?)", [[str(p), i] for i, p in held])
    source = read_parquet_sql([p for _, p in held], "union_by_name = true, filename = true")
    latest = (
        f"SELECT r.* EXCLUDE (filename), f.segment AS _segment FROM {source} r "
        "JOIN _files f USING (filename) "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY f.segment DESC) = 1"
    )
    if replaces:
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE _replaced "
            "(segment INTEGER, model_version VARCHAR, poster_id VARCHAR)"
        )
        conn.executemany(
            "INSERT INTO _replaced SELECT ?, ?, unnest(?)",
            [[i, r["model_version"], r["poster_ids"]] for i, r in replaces],
        )
        latest = (
            f"SELECT * FROM ({latest}) l WHERE NOT EXISTS (SELECT 1 FROM _replaced x "
            "WHERE x.segment > l._segment AND x.model_version = l.model_version "
            "AND x.poster_id = l.poster_id)"
        )
    conn.execute(f"CREATE OR REPLACE TEMP TABLE _incoming AS SELECT * EXCLUDE (_segment) FROM ({latest})")
    _replace_by_key(conn, table, "_incoming")
    conn.execute("DROP TABLE _incoming")
    conn.execute("DROP TABLE _files")
    if replaces:
        conn.execute("DROP TABLE _replaced")


def export_catalog(lake: Lake, conn: duckdb.DuckDBPyConnection) -> bool:
    """A home from before the lake: export every row its lake tables hold into one segment per
    batch (named to sort before any other), recorded as applied. Detail rows go with the batch of
    their poster's ok row. Returns whether there was anything to export."""
    held = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in LAKE_TABLES)
    if held:
        found = conn.execute(
            "SELECT batch FROM raw_posters UNION SELECT batch FROM extractions ORDER BY 1"
        ).fetchall()
        batches = [b for (b,) in found]
        number = {b: i for i, b in enumerate(batches)}
        conn.execute("CREATE TEMP TABLE _batch_no (batch VARCHAR, batch_no INTEGER)")
        conn.executemany("INSERT INTO _batch_no VALUES (?, ?)", list(number.items()))
        conn.execute(
            "CREATE TEMP TABLE _poster_batch AS SELECT poster_id, min(batch) AS batch FROM raw_posters "
            "GROUP BY poster_id"
        )
        lake.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=lake.root))
        counts: dict[int, dict[str, int]] = {}
        for table in LAKE_TABLES:
            if table in ("raw_posters", "extractions"):
                rows = f"SELECT t.*, n.batch_no FROM {table} t JOIN _batch_no n USING (batch)"
            else:
                # Rows of a poster no batch holds any more (left by an older abandon) have nowhere
                # to go: the migration leaves them in the catalog only.
                rows = (
                    f"SELECT t.*, n.batch_no FROM {table} t JOIN _poster_batch p USING (poster_id) "
                    "JOIN _batch_no n USING (batch)"
                )
            for no, n in conn.execute(f"SELECT batch_no, count(*) FROM ({rows}) GROUP BY 1").fetchall():
                counts.setdefault(no, {})[table] = n
            conn.execute(
                f"COPY ({rows}) TO {_sql_path(staging / table)} "
                "(FORMAT parquet, PARTITION_BY (batch_no), WRITE_PARTITION_COLUMNS false)"
            )
        conn.execute("DROP TABLE _batch_no")
        conn.execute("DROP TABLE _poster_batch")
        for batch, no in number.items():
            if no not in counts:
                continue
            segment = staging / f"segment-{no}"
            segment.mkdir(parents=True)
            for table in counts[no]:
                (part,) = (staging / table / f"batch_no={no}").glob("*.parquet")
                os.rename(part, segment / f"{table}.parquet")
            meta = {"batch": batch, "tables": counts[no], "replaces": [], "migrated": True}
            (segment / SEGMENT_FILE).write_text(json.dumps(meta))
            target = lake.batch_dir(batch) / MIGRATED_SEGMENT
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)  # from an export whose transaction rolled back
            os.rename(segment, target)
            conn.execute(
                "INSERT OR REPLACE INTO lake_segments VALUES (?, ?, ?, ?)",
                [MIGRATED_SEGMENT, batch, sum(counts[no].values()), dt.datetime.now(dt.UTC)],
            )
        shutil.rmtree(staging, ignore_errors=True)
        log.info("lake: exported the rows of %d batches of a home made before the lake", len(counts))
    return bool(held)
