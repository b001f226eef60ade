"""The catalog at corpus scale (issue 14, part 4): catalog rows for N posters, no images, in a
fresh home's DuckDB file, then the product's own dbt build and read path over them.

    .venv/bin/python benchmarks/catalog_scale.py                  # 1M posters (~10 GB disk with vectors)
    .venv/bin/python benchmarks/catalog_scale.py --n 100000       # quick
    .venv/bin/python benchmarks/catalog_scale.py --n 100000 --no-embeddings --keep --home /tmp/cat100k
    .venv/bin/python benchmarks/catalog_scale.py --n 100000 --neighbors   # + FAISS index and poster_neighbors

What it measures, on this machine (print the load average beside the figures: it may be shared):

- generation: the rows, written with DuckDB SQL over ``range()`` in chunks of posters (the
  embeddings from numpy in chunks of ``--chunk``), and the database file's size;
- the dbt build as ``sql_models`` runs it: ``inputs_version`` (the scan that decides whether a
  build is due), ``record_current_versions``, then ``dbt build --vars {db_path: ...}`` through
  the product's own ``PosterDbtCli`` resource (dagster-dbt's ``DbtCliResource``: the venv's dbt,
  the project's profiles.yml, a per-build target folder from ``build_target``), outside a Dagster
  run; its wall time, the dbt process's peak RSS, posters per second, and the slowest nodes from
  dbt's run_results.json;
- the README's example queries, each through ``run_readonly`` (what ``poster-assets sql`` calls:
  read-only, 30 s timeout and 2 GB memory cap unless the environment says otherwise);
- with ``--neighbors``: ``sync_index`` and ``refresh_neighbors`` (what ``faiss_index`` calls) over
  the foreground vectors, then again after ``--fresh`` new vectors (a batch arriving).

Rows look like a demo home's: ~1 % of files quarantined, ~1 % more rows for duplicate copies; one
``extractions`` record per extractor and ok poster at the versions ``extract.versions`` derives
(the demo's model versions), ~0.2 % of OCR runs failed (no text, no layers for those), and
``--old-ocr-share`` of posters also carrying an older OCR version (after a model change, before
gc); 3 to 8 OCR lines per poster with the title first; a depth map and a foreground mask each;
3 to 5 layers (background, subject, title, others); one 1280-d L2-normalised ``foreground``
vector per ok poster from ``faiss_scale.ClusteredVectors``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/catalog_scale.py` puts only benchmarks/ there

from poster_assets.extract.versions import (  # noqa: E402
    CurrentVersions,
    record_current_versions,
    versions_from_models,
)
from poster_assets.storage.schema import SCHEMA_SQL  # noqa: E402
from poster_assets.storage.store import DB_FILE, Store  # noqa: E402

# The model versions of a demo home (/tmp/d13f, models as `make demo` installs them).
OCR_VERSION = (
    "ppocr:ppocr-det@PP-OCRv6-det-small+090f04abcd9d:bf16,ppocr-cls@ch-mobile-v2.0-cls+e47acedf6632:bf16,"
    "ppocr-rec@PP-OCRv6-rec-small+6f327246b503:bf16+rec-192px-v1+nfkc+spaces-v1"
)
OLD_OCR_VERSION = OCR_VERSION.replace("PP-OCRv6", "PP-OCRv5")  # sorts before the current one
DEPTH_VERSION = "depth:heuristic-v1"
FOREGROUND_VERSION = "isnet-general-medium@imgly-1.4.5-768x512px+b6e8497ba978:bf16"
EFFICIENTNET_VERSION = "efficientnet-lite0@imagenet+579344248a93:f32"
DECODER = "pillow-13.0.0/decode-v2"

# Which posters are what: fixed residues of the poster's index, so SQL and numpy agree.
QUARANTINED = (97, 13)  # i % 97 == 13: ~1 % of files fail to decode
DUPLICATED = (89, 7)  # i % 89 == 7: ~1.1 % of posters were ingested twice (a second path)
OCR_FAILED = (503, 5)  # i % 503 == 5: ~0.2 % of OCR runs failed (and so have no layers)
POSTERS_PER_BATCH = 10_000
WORDS = ["Frontier", "Outlaw", "Horizon", "Midnight", "River", "Shadow", "Empire", "Last", "Summer",
         "City", "Storm", "Garden", "Iron", "Silent", "Golden", "Night", "Road", "Ghost", "Star",
         "Island"]  # fmt: skip
GENRES = ["drama", "western", "comedy", "horror", "sci-fi", "thriller", "romance", "action", "animation",
          "documentary"]  # fmt: skip
CREDITS = ["REDWOOD PICTURES PRESENTS", "A FILM BY", "COMING SOON", "STARRING", "IN CINEMAS NOW",
           "MUSIC BY", "BASED ON THE NOVEL", "SCREENPLAY BY"]  # fmt: skip


def current() -> CurrentVersions:
    """What every asset is current at, derived as ``extract.versions.current_versions`` does
    from the models a demo home serves (no models folder needed)."""
    return versions_from_models(OCR_VERSION, DEPTH_VERSION, FOREGROUND_VERSION, EFFICIENTNET_VERSION)


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _macros(conn: duckdb.DuckDBPyConnection, old_ocr_share: float) -> None:
    """Per-poster values as functions of its index ``i``: every table's rows agree on a poster."""
    qm, qr = QUARANTINED
    dm, dr = DUPLICATED
    fm, fr = OCR_FAILED
    conn.execute(f"""
        CREATE OR REPLACE TEMP MACRO u(i, salt) AS (hash(i, salt) % 1000003) / 1000003.0;
        CREATE OR REPLACE TEMP MACRO pick(xs, i, salt) AS xs[1 + (hash(i, salt) % len(xs))::INTEGER];
        CREATE OR REPLACE TEMP MACRO pid(i) AS sha256('catalog-scale-' || i);
        CREATE OR REPLACE TEMP MACRO is_ok(i) AS i % {qm} <> {qr};
        CREATE OR REPLACE TEMP MACRO is_dup(i) AS i % {qm} <> {qr} AND i % {dm} = {dr};
        CREATE OR REPLACE TEMP MACRO ocr_ok(i) AS i % {qm} <> {qr} AND i % {fm} <> {fr};
        CREATE OR REPLACE TEMP MACRO has_old_ocr(i) AS ocr_ok(i) AND u(i, 'old') < {old_ocr_share};
        CREATE OR REPLACE TEMP MACRO width(i) AS 600 + 100 * (hash(i, 'w') % 5)::INTEGER;
        CREATE OR REPLACE TEMP MACRO height(i) AS width(i) * 3 // 2;
        CREATE OR REPLACE TEMP MACRO title(i) AS
            CASE WHEN u(i, 'the') < 0.3 THEN 'The ' ELSE '' END
            || pick({_sql_list(WORDS)}, i, 't1') || ' ' || pick({_sql_list(WORDS)}, i, 't2');
        CREATE OR REPLACE TEMP MACRO genres(i) AS
            CASE WHEN u(i, 'g2') < 0.3
                 THEN [pick({_sql_list(GENRES)}, i, 'g1'), pick({_sql_list(GENRES)}, i, 'g2')]
                 ELSE [pick({_sql_list(GENRES)}, i, 'g1')] END;
        CREATE OR REPLACE TEMP MACRO file_name(i) AS
            lpad(i::VARCHAR, 7, '0') || '_' || lower(replace(title(i), ' ', '-')) || '.jpg';
        CREATE OR REPLACE TEMP MACRO batch(i) AS
            'bench-' || lpad((i // {POSTERS_PER_BATCH})::VARCHAR, 5, '0');
        CREATE OR REPLACE TEMP MACRO uri(i) AS '/data/posters/' || batch(i) || '/' || file_name(i);
        CREATE OR REPLACE TEMP MACRO ingested(i) AS
            TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_milliseconds(i * 2000);
        CREATE OR REPLACE TEMP MACRO lines(i) AS 3 + (hash(i, 'n') % 6)::INTEGER;
        -- The title line's top edge: in the top third for 60 %, the bottom for 25 %, else the middle.
        CREATE OR REPLACE TEMP MACRO title_y(i) AS CASE
            WHEN u(i, 'ty') < 0.60 THEN 60 + (hash(i, 'y') % 120)::INTEGER
            WHEN u(i, 'ty') < 0.85 THEN height(i) - 260 + (hash(i, 'y') % 60)::INTEGER
            ELSE height(i) // 2 - 40 END;
        CREATE OR REPLACE TEMP MACRO layers(i) AS 3 + (hash(i, 'k') % 3)::INTEGER;
    """)


def _insert_raw_posters(conn: duckdb.DuckDBPyConnection, lo: int, hi: int) -> None:
    # UNION ALL matches by position, so the duplicates' SELECT lists every column in order.
    conn.execute(
        """
        INSERT INTO raw_posters BY NAME
        SELECT pid(i) AS poster_id, uri(i) AS source_uri, file_name(i) AS file_name,
               80000 + (hash(i, 'b') % 400000)::BIGINT AS file_bytes,
               CASE WHEN is_ok(i) THEN 'ok' ELSE 'quarantined' END AS status,
               CASE WHEN is_ok(i) THEN NULL ELSE 'cannot decode: image file is truncated' END AS reason,
               NULL::VARCHAR AS duplicate_of,
               CASE WHEN is_ok(i) THEN width(i) END AS width,
               CASE WHEN is_ok(i) THEN height(i) END AS height,
               CASE WHEN is_ok(i) THEN CASE WHEN u(i, 'f') < 0.9 THEN 'JPEG' ELSE 'PNG' END END AS format,
               CASE WHEN is_ok(i) THEN 'RGB' END AS source_mode,
               CASE WHEN is_ok(i) THEN 1 END AS frames,
               CASE WHEN is_ok(i) THEN false END AS exif_rotated,
               title(i) AS title, genres(i) AS genres, 1950 + (hash(i, 'yr') % 76)::INTEGER AS year,
               json_object('file', file_name(i), 'title', title(i), 'genres', genres(i),
                           'year', 1950 + (hash(i, 'yr') % 76)::INTEGER) AS sidecar,
               'blobs/originals/' || pid(i)[:2] || '/' || pid(i) || '.jpg' AS original_path,
               CASE WHEN is_ok(i) THEN 'blobs/thumbs/' || pid(i)[:2] || '/' || pid(i) || '.jpg' END
                   AS thumbnail_path,
               batch(i) AS batch, $decoder AS decoder, ingested(i) AS ingested_at
        FROM range($lo, $hi) t(i)
        UNION ALL
        SELECT pid(i), '/data/posters/copies/' || file_name(i), file_name(i),
               80000 + (hash(i, 'b') % 400000)::BIGINT, 'duplicate', 'same bytes as ' || uri(i), uri(i),
               width(i), height(i), 'JPEG', 'RGB', 1, false, title(i), genres(i),
               1950 + (hash(i, 'yr') % 76)::INTEGER, NULL, NULL, NULL,
               batch(i), $decoder, ingested(i) + INTERVAL 30 DAY
        FROM range($lo, $hi) t(i) WHERE is_dup(i)
        """,
        {"lo": lo, "hi": hi, "decoder": DECODER},
    )


def _insert_extractions(conn: duckdb.DuckDBPyConnection, lo: int, hi: int, cv: CurrentVersions) -> None:
    # (asset, version, seconds per poster, which posters): layers need an OCR result.
    conn.execute(
        """
        INSERT INTO extractions BY NAME
        SELECT a.asset, pid(i) AS poster_id, a.version AS model_version,
               CASE WHEN a.asset = 'ocr_text' AND NOT ocr_ok(i) THEN 'failed' ELSE 'ok' END AS status,
               CASE WHEN a.asset = 'ocr_text' AND NOT ocr_ok(i)
                    THEN 'RuntimeError: text detector returned an invalid box' END AS error,
               batch(i) AS batch, a.seconds * (0.5 + u(i, a.asset)) AS seconds,
               ingested(i) + INTERVAL 1 HOUR AS extracted_at
        FROM range($lo, $hi) t(i)
        CROSS JOIN (VALUES ('ocr_text', $ocr, 0.9), ('depth_maps', $depth, 0.05),
                           ('foreground_masks', $fg, 0.4), ('layer_masks', $layers, 0.06),
                           ('foreground_embeddings', $emb, 0.12)) a(asset, version, seconds)
        WHERE is_ok(i) AND (a.asset <> 'layer_masks' OR ocr_ok(i))
        UNION ALL
        SELECT 'ocr_text', pid(i), $old_ocr, 'ok', NULL, batch(i), 0.9 * (0.5 + u(i, 'ocr_text')),
               ingested(i) + INTERVAL 1 HOUR - INTERVAL 60 DAY
        FROM range($lo, $hi) t(i) WHERE has_old_ocr(i)
        """,
        {
            "lo": lo,
            "hi": hi,
            "ocr": cv.ocr,
            "depth": cv.depth,
            "fg": cv.foreground,
            "layers": cv.layers,
            "emb": cv.embeddings,
            "old_ocr": OLD_OCR_VERSION,
        },  # fmt: skip
    )


def _insert_ocr_text(conn: duckdb.DuckDBPyConnection, lo: int, hi: int, version: str, old: bool) -> None:
    # Line 0 is the title in big letters; the rest are credits in small ones, below it.
    # An older version read the second line differently (the README's changed-lines query).
    conn.execute(
        f"""
        INSERT INTO ocr_text BY NAME
        WITH p AS (
            SELECT i, unnest(range(lines(i))) AS j FROM range($lo, $hi) t(i)
            WHERE {"has_old_ocr(i)" if old else "ocr_ok(i)"}
        ),
        b AS (
            SELECT i, j,
                   CASE WHEN j = 0 THEN 40 + (hash(i, 'x') % 60)::INTEGER
                        ELSE 100 + (hash(i, j, 'x') % 200)::INTEGER END AS x0,
                   CASE WHEN j = 0 THEN width(i) - 40 - (hash(i, 'x1') % 60)::INTEGER
                        ELSE width(i) - 100 - (hash(i, j, 'x1') % 200)::INTEGER END AS x1,
                   CASE WHEN j = 0 THEN title_y(i)
                        ELSE least(height(i) - 40, title_y(i) + 110 + 30 * j) END AS y0,
                   CASE WHEN j = 0 THEN 90 ELSE 20 END AS h
            FROM p
        )
        SELECT pid(i) AS poster_id, $version AS model_version, j AS line_index,
               CASE WHEN j = 0 THEN upper(title(i))
                    WHEN $old AND j = 1 THEN lower(pick($credits, i + j, 'c'))
                    ELSE pick($credits, i + j, 'c') END AS text,
               round(0.80 + 0.2 * u(i * 16 + j, 'conf'), 5) AS confidence,
               [x0, y0, x1, y0, x1, y0 + h, x0, y0 + h]::DOUBLE[8] AS polygon,
               [x0, y0, x1 + 1, y0 + h + 1]::INTEGER[4] AS box
        FROM b
        """,
        {"lo": lo, "hi": hi, "version": version, "old": old, "credits": CREDITS},
    )


def _insert_depth_and_foreground(
    conn: duckdb.DuckDBPyConnection, lo: int, hi: int, cv: CurrentVersions
) -> None:
    conn.execute(
        """
        INSERT INTO depth_maps BY NAME
        WITH h AS (
            SELECT i, list_transform(range(32), lambda b: 0.5 + u(i * 32 + b, 'h')) AS raw
            FROM range($lo, $hi) t(i) WHERE is_ok(i)
        )
        SELECT pid(i) AS poster_id, $depth AS model_version,
               'blobs/depth/depth-heuristic-v1-10503672/' || pid(i)[:2] || '/' || pid(i) || '.png'
                   AS depth_path,
               width(i) AS width, height(i) AS height, 0.0 AS depth_min, 1.0 AS depth_max,
               0.3 + 0.4 * u(i, 'dm') AS depth_mean,
               list_transform(raw, lambda x: x / list_sum(raw))::DOUBLE[32] AS histogram,
               list_transform(range(1 + (hash(i, 'modes') % 3)::INTEGER),
                              lambda m: (m + u(i * 4 + m, 'mo')) / 3.0) AS modes
        FROM h
        """,
        {"lo": lo, "hi": hi, "depth": cv.depth},
    )
    conn.execute(
        """
        INSERT INTO foreground_masks BY NAME
        WITH f AS (SELECT i, 0.05 + 0.6 * u(i, 'fa') AS area FROM range($lo, $hi) t(i) WHERE is_ok(i))
        SELECT pid(i) AS poster_id, $fg AS model_version,
               'blobs/foreground/isnet-general-medium-imgly-1.4.5-768x512px-b6e84-4614fa1f/'
                   || pid(i)[:2] || '/' || pid(i) || '.png' AS mask_path,
               area AS area_fraction,
               [0, (height(i) * (1 - sqrt(area)))::INTEGER, (width(i) * sqrt(area))::INTEGER + 1, height(i)]
                   ::INTEGER[4] AS bbox,
               area - 0.01 * u(i, 'mp') AS mean_probability
        FROM f
        """,
        {"lo": lo, "hi": hi, "fg": cv.foreground},
    )


def _insert_layer_masks(conn: duckdb.DuckDBPyConnection, lo: int, hi: int, cv: CurrentVersions) -> None:
    # Layer 0 the background, the last the title, the one before it the subject, any others
    # between; a third of the posters with 4 or 5 layers have an "other" layer in front of the subject.
    conn.execute(
        """
        INSERT INTO layer_masks BY NAME
        WITH p AS (
            SELECT i, layers(i) AS k, unnest(range(layers(i))) AS j FROM range($lo, $hi) t(i) WHERE ocr_ok(i)
        ),
        r AS (
            SELECT *,
                   CASE WHEN j = 0 THEN 'background' WHEN j = k - 1 THEN 'title'
                        WHEN j = k - 2 THEN 'subject' ELSE 'other' END AS role,
                   CASE WHEN k >= 4 AND hash(i, 'swap') % 3 = 0 AND j = k - 2 THEN j - 1
                        WHEN k >= 4 AND hash(i, 'swap') % 3 = 0 AND j = k - 3 THEN j + 1
                        ELSE j END AS depth_rank
            FROM p
        )
        SELECT pid(i) AS poster_id, $layers AS model_version, j AS layer_index, depth_rank, role,
               CASE role WHEN 'title' THEN 0.05 + 0.05 * u(i, 'ta') ELSE 0.1 + 0.3 * u(i * 8 + j, 'la') END
                   AS area_fraction,
               CASE role WHEN 'background' THEN [0, 0, width(i), height(i)]
                         ELSE [0, (hash(i, j, 'by') % 400)::INTEGER, width(i), height(i)]
               END::INTEGER[4] AS bbox,
               (depth_rank + 0.5) / k AS mean_depth, k,
               CASE role WHEN 'title' THEN upper(title(i)) END AS title_text,
               CASE role WHEN 'title' THEN [40, title_y(i), width(i) - 40, title_y(i) + 91] END::INTEGER[4]
                   AS title_box,
               'blobs/layers/layers-fused-fg-depth-ink-v1-2852f194af25-2447b1d5/' || pid(i)[:2] || '/'
                   || pid(i) || '.png' AS labels_path,
               split_part($layers, '+', 1) AS method_version, $depth AS depth_version,
               $fg AS foreground_version, $ocr AS ocr_version
        FROM r
        """,
        {"lo": lo, "hi": hi, "layers": cv.layers, "depth": cv.depth, "fg": cv.foreground, "ocr": cv.ocr},
    )


def _ok_indices(lo: int, hi: int) -> np.ndarray:
    i = np.arange(lo, hi, dtype=np.int64)
    return i[i % QUARANTINED[0] != QUARANTINED[1]]


def _insert_embeddings(conn: duckdb.DuckDBPyConnection, lo: int, hi: int, version: str, gen: Any) -> None:
    """One ``foreground`` vector per ok poster. DuckDB reads a 2-D numpy array as one column
    per row of it, so the (dim + 1, m) transpose gives the poster index (exact in float32 below
    2**24) and the vector's dim values as columns, and ``list_value`` puts them together."""
    ids = _ok_indices(lo, hi)
    if len(ids) == 0:
        return
    vectors = gen.draw(len(ids))
    dim = vectors.shape[1]
    block = np.empty((dim + 1, len(ids)), np.float32)
    block[0] = ids
    block[1:] = vectors.T
    del vectors
    values = ", ".join(f"column{j}" for j in range(1, dim + 1))
    conn.register("embedding_block", block)
    conn.execute(
        f"""
        INSERT INTO foreground_embeddings BY NAME
        SELECT pid(column0::BIGINT) AS poster_id, 'foreground' AS kind, $version AS model_version,
               {dim} AS dim, list_value({values})::FLOAT[] AS embedding
        FROM embedding_block
        """,
        {"version": version},
    )
    conn.unregister("embedding_block")


@dataclass
class Generated:
    seconds: dict[str, float]
    rows: dict[str, int]
    db_bytes: int


def generate_catalog(
    db_path: Path,
    n: int,
    cv: CurrentVersions,
    *,
    embedding_dim: int = 1280,
    old_ocr_share: float = 0.05,
    chunk: int = 50_000,
    rows_chunk: int = 250_000,
    memory_limit: str = "6GB",
    seed: int = 0,
) -> Generated:
    """Write the catalog of ``n`` posters into a new DuckDB file at ``db_path`` (schema from
    ``storage.schema``); ``embedding_dim`` 0 writes no vectors. Returns seconds per table."""
    seconds: dict[str, float] = {}
    with duckdb.connect(str(db_path)) as conn:
        # The machine is shared: bound DuckDB's memory below its default 80 % of RAM.
        conn.execute(f"SET memory_limit = '{memory_limit}'")
        conn.execute(SCHEMA_SQL)
        _macros(conn, old_ocr_share)
        steps = {
            "raw_posters": lambda lo, hi: _insert_raw_posters(conn, lo, hi),
            "extractions": lambda lo, hi: _insert_extractions(conn, lo, hi, cv),
            "ocr_text": lambda lo, hi: (
                _insert_ocr_text(conn, lo, hi, cv.ocr, old=False),
                _insert_ocr_text(conn, lo, hi, OLD_OCR_VERSION, old=True),
            ),
            "depth_maps+foreground_masks": lambda lo, hi: _insert_depth_and_foreground(conn, lo, hi, cv),
            "layer_masks": lambda lo, hi: _insert_layer_masks(conn, lo, hi, cv),
        }
        for name, step in steps.items():
            t = time.perf_counter()
            for lo in range(0, n, rows_chunk):
                step(lo, min(n, lo + rows_chunk))
            seconds[name] = time.perf_counter() - t
        if embedding_dim:
            # Imported here: faiss_scale imports faiss and search.index, not needed without vectors.
            from benchmarks.faiss_scale import ClusteredVectors

            t = time.perf_counter()
            gen = ClusteredVectors(embedding_dim, clusters=1000, seed=seed)
            for lo in range(0, n, chunk):
                _insert_embeddings(conn, lo, min(n, lo + chunk), cv.kinds["foreground"], gen)
            seconds["foreground_embeddings"] = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute("CHECKPOINT")
        seconds["checkpoint"] = time.perf_counter() - t
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
            ).fetchall()
        ]
        rows = {tb: conn.execute(f'SELECT count(*) FROM "{tb}"').fetchone()[0] for tb in sorted(tables)}
    return Generated(seconds, rows, _db_bytes(db_path))


def _db_bytes(db_path: Path) -> int:
    wal = db_path.with_name(db_path.name + ".wal")
    return db_path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


class _PeakRss:
    """Peak RSS (VmHWM) of another process, sampled until it exits or ``stop``. Not the
    children's ru_maxrss: a child forked from this process counts this process's pages before exec."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self._done.wait(0.05):
            try:
                text = status.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak = max(self.peak, int(line.split()[1]) << 10)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def dbt_build(store: Store, cv: CurrentVersions) -> dict[str, Any]:
    """What ``sql_models`` does before and for a build, outside a Dagster run: the inputs
    version (its skip check), ``record_current_versions``, and ``dbt build`` through the
    product's ``PosterDbtCli`` into a per-build target folder under the home."""
    from poster_assets.defs.dbt.assets import build_target
    from poster_assets.defs.dbt.inputs import inputs_version, load_manifest
    from poster_assets.defs.dbt.project import dbt_executable, poster_dbt_project, prepare_manifest
    from poster_assets.defs.dbt.resources import PosterDbtCli

    out: dict[str, Any] = {}
    manifest = load_manifest(prepare_manifest())
    t = time.perf_counter()
    out["inputs_version"] = inputs_version(store.db, cv.by_asset(), manifest)
    out["inputs_version_s"] = time.perf_counter() - t
    t = time.perf_counter()
    record_current_versions(store.db, cv)
    out["record_current_versions_s"] = time.perf_counter() - t
    target = build_target(store.home_path, "sql_models", uuid.uuid4().hex)
    dbt = PosterDbtCli(project_dir=poster_dbt_project, dbt_executable=dbt_executable())
    t = time.perf_counter()
    invocation = dbt.cli(
        ["build", "--vars", json.dumps({"db_path": str(store.db_path)})],
        target_path=target,
        raise_on_error=False,
    )
    sampler = _PeakRss(invocation.process.pid)
    invocation.wait()
    out["dbt_build_s"] = time.perf_counter() - t
    out["dbt_peak_rss_sampled"] = sampler.stop()
    out["dbt_ok"] = invocation.is_successful()
    out["target"] = str(target)
    out["nodes"] = _node_timings(target / "run_results.json")
    return out


def _node_timings(path: Path) -> list[tuple[str, str, float]]:
    """(node, status, seconds) from dbt's run_results.json, slowest first."""
    if not path.exists():
        return []
    results = json.loads(path.read_text())["results"]
    found = [(r["unique_id"].split(".", 2)[-1], r["status"], float(r["execution_time"])) for r in results]
    return sorted(found, key=lambda r: -r[2])


# The README's "SQL over the annotations" examples, as written there.
README_QUERIES = {
    "westerns_title_bottom": "SELECT sidecar_title, title_text FROM marts.poster_annotations "
    "WHERE title_placement = 'bottom' AND list_contains(genres, 'western')",
    "layer_count_shares": "SELECT layer_count, count(*) AS posters, "
    "round(count(*) / sum(count(*)) OVER (), 2) AS share FROM marts.poster_annotations GROUP BY 1 ORDER BY 1",
    "ocr_changed_lines": "SELECT a.poster_id[:8] AS poster, a.line_index, a.text AS before, b.text AS after "
    "FROM ocr_text a JOIN ocr_text b USING (poster_id, line_index) "
    "WHERE a.model_version < b.model_version AND a.text IS DISTINCT FROM b.text",
    "extraction_coverage": "SELECT asset, model_version, ok_posters, failed_posters, missing_posters, "
    "is_current_version FROM marts.extraction_coverage ORDER BY asset",
    "ssl_curriculum": "SELECT curriculum_rank, poster_id[:8], primary_genre, title_placement, layer_count, "
    "difficulty FROM marts.ssl_labels ORDER BY curriculum_rank LIMIT 20",
}
NEIGHBORS_QUERY = (
    "SELECT p.file_name, n.rank, q.file_name AS neighbor, round(n.score, 3) AS score "
    "FROM poster_neighbors n JOIN raw_posters p USING (poster_id) "
    "JOIN raw_posters q ON q.poster_id = n.neighbor_id "
    # The README's query is on the poster kind; only foreground vectors are generated here.
    "WHERE n.kind = 'foreground' AND n.score > 0.95 ORDER BY score DESC"
)


def run_queries(store: Store, queries: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each query through ``run_readonly`` (``poster-assets sql``), timed; errors reported, not raised."""
    from poster_assets.storage.readonly_sql import ReadOnlySqlError, run_readonly

    out = {}
    for name, sql in queries.items():
        t = time.perf_counter()
        try:
            _, rows = run_readonly(store.db, sql)
            out[name] = {"s": time.perf_counter() - t, "rows": len(rows)}
        except ReadOnlySqlError as exc:
            out[name] = {"s": time.perf_counter() - t, "error": str(exc)}
    return out


def neighbors(store: Store, cv: CurrentVersions, n: int, fresh: int) -> dict[str, Any]:
    """``faiss_index``'s work for the foreground kind through its own functions: the index in
    step with the table, then ``poster_neighbors`` (written whole in a new home); then, with
    ``fresh``, that many new vectors and the refresh after them (``add`` and ``added``: the
    cost of a batch arriving at this size)."""
    from poster_assets.search.sync import (
        copy_vectors,
        index_recall,
        refresh_neighbors,
        sync_index,
        vectors_version,
    )

    out: dict[str, Any] = {}
    kind, version = "foreground", cv.kinds["foreground"]
    t = time.perf_counter()
    out["vectors_version"] = vectors_version(store, {kind: version})
    out["vectors_version_s"] = time.perf_counter() - t
    t = time.perf_counter()
    update = sync_index(store, kind, version)
    out["sync_index_s"] = time.perf_counter() - t
    out["sync_mode"] = update.mode
    t = time.perf_counter()
    out["neighbors_mode"] = refresh_neighbors(store, [update])
    out["write_neighbors_s"] = time.perf_counter() - t
    out["neighbor_rows"] = store.db.query("SELECT count(*) FROM poster_neighbors")[0][0]
    if fresh:
        from benchmarks.faiss_scale import ClusteredVectors

        gen = ClusteredVectors(update.index.dim, clusters=1000, seed=1)  # same clusters, new draws
        # Poster indices no catalog of n holds, nor an earlier --fresh on a reused home.
        lo = 10 * n + store.db.query("SELECT count(*) FROM foreground_embeddings")[0][0]
        with store.db.transaction() as conn:
            _macros(conn, 0.0)
            _insert_embeddings(conn, lo, lo + fresh, version, gen)
        t = time.perf_counter()
        update = sync_index(store, kind, version)
        out["fresh_sync_index_s"] = time.perf_counter() - t
        out["fresh_sync_mode"], out["fresh_added"] = update.mode, update.added
        t = time.perf_counter()
        out["fresh_neighbors_mode"] = refresh_neighbors(store, [update])
        out["fresh_neighbors_s"] = time.perf_counter() - t
        # What the recall check (recall_at_10_vs_exact) does after each refresh.
        t = time.perf_counter()
        rows = copy_vectors(store, kind, version, update.index.ids, update.index.dim)
        try:
            out["recall"] = index_recall(update.index, rows)
        finally:
            rows.close()
        out["recall_check_s"] = time.perf_counter() - t
    out["peak_rss_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
    return out


def _gib(b: float) -> str:
    return f"{b / (1 << 30):.2f} GiB"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _print_dbt(built: dict[str, Any], ok: int) -> None:
    status, seconds = ("ok" if built["dbt_ok"] else "FAILED"), built["dbt_build_s"]
    print(
        f"dbt build {status} in {seconds:.1f} s ({ok / seconds:,.0f} ok posters/s), dbt peak RSS "
        f"{_gib(built['dbt_peak_rss_sampled'])}; load {_load()}"
    )
    print(
        f"  inputs_version {built['inputs_version_s']:.1f} s, record_current_versions "
        f"{built['record_current_versions_s']:.2f} s; target {built['target']}"
    )
    for node, node_status, seconds in built["nodes"][:8]:
        print(f"  {seconds:8.2f} s  {node_status:<6} {node}")


def _print_neighbors(nb: dict[str, Any]) -> None:
    print(
        f"neighbors: vectors_version {nb['vectors_version_s']:.1f} s, sync_index ({nb['sync_mode']}) "
        f"{nb['sync_index_s']:.1f} s, poster_neighbors ({nb['neighbors_mode']}) "
        f"{nb['write_neighbors_s']:.1f} s "
        f"({nb['neighbor_rows']:,} rows); this process's peak RSS {_gib(nb['peak_rss_self'])}; load {_load()}"
    )
    if "fresh_added" in nb:
        print(
            f"  {nb['fresh_added']:,} new posters: sync_index ({nb['fresh_sync_mode']}) "
            f"{nb['fresh_sync_index_s']:.1f} s, poster_neighbors ({nb['fresh_neighbors_mode']}) "
            f"{nb['fresh_neighbors_s']:.1f} s; the recall check {nb['recall_check_s']:.1f} s "
            f"(recall@10 {nb['recall']:.3f})"
        )


def _generate(store: Store, cv: CurrentVersions, args: argparse.Namespace) -> dict[str, Any]:
    t = time.perf_counter()
    gen = generate_catalog(
        store.db_path,
        args.n,
        cv,
        embedding_dim=0 if args.no_embeddings else args.embedding_dim,
        old_ocr_share=args.old_ocr_share,
        chunk=args.chunk,
        memory_limit=args.memory_limit,
    )
    seconds = time.perf_counter() - t
    print(f"generated in {seconds:.1f} s; db {_gib(gen.db_bytes)}; load {_load()}")
    for name, s in gen.seconds.items():
        print(f"  {name:<28} {s:8.1f} s")
    for name, rows in gen.rows.items():
        print(f"  {name:<28} {rows:>12,} rows")
    return {"s": seconds, **gen.__dict__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="posters (files ingested, before duplicates)")
    ap.add_argument(
        "--home", type=Path, help="a new (or empty) home folder; default a temporary one under /tmp"
    )
    ap.add_argument("--keep", action="store_true", help="keep the home folder afterwards")
    ap.add_argument("--reuse", action="store_true", help="use the catalog already in --home (no generation)")
    ap.add_argument("--embedding-dim", type=int, default=1280)
    ap.add_argument("--no-embeddings", action="store_true", help="write no foreground_embeddings rows")
    ap.add_argument("--old-ocr-share", type=float, default=0.05, help="posters with an older OCR version too")
    ap.add_argument("--chunk", type=int, default=50_000, help="posters per embedding insert")
    ap.add_argument("--memory-limit", default="6GB", help="DuckDB memory limit while generating")
    ap.add_argument("--skip-dbt", action="store_true")
    ap.add_argument(
        "--neighbors", action="store_true", help="also sync the FAISS index and write poster_neighbors"
    )
    ap.add_argument(
        "--fresh",
        type=int,
        default=1000,
        help="with --neighbors: new vectors added afterwards, and the refresh after them timed",
    )
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="catalog-scale-", dir="/tmp"))
    home.mkdir(parents=True, exist_ok=True)
    if (home / DB_FILE).exists() != args.reuse:
        sys.exit(f"{home / DB_FILE} {'is missing' if args.reuse else 'exists: give a new home folder'}")
    store = Store.at(home)
    cv = current()
    report: dict[str, Any] = {"n": args.n, "home": str(home), "load_start": _load()}
    print(f"home {home}; n={args.n:,}; load {_load()}", flush=True)
    try:
        if args.reuse:
            print(f"reusing {store.db_path}: {_gib(_db_bytes(store.db_path))}")
        else:
            report["generate"] = _generate(store, cv, args)
        if not args.skip_dbt:
            built = dbt_build(store, cv)
            report["dbt"] = built
            ok = ok_posters(store)
            _print_dbt(built, ok)
            report["db_bytes_after_dbt"] = _db_bytes(store.db_path)
            print(f"db after dbt {_gib(report['db_bytes_after_dbt'])}")
            report["queries"] = run_queries(store, README_QUERIES)
            print(f"README queries via run_readonly; load {_load()}")
            for name, q in report["queries"].items():
                what = f"{q['rows']:,} rows" if "rows" in q else f"ERROR {q['error'][:120]}"
                print(f"  {name:<26} {q['s']:7.2f} s  {what}")
        if args.neighbors:
            try:
                report["neighbors"] = neighbors(store, cv, args.n, args.fresh)
                _print_neighbors(report["neighbors"])
                report["neighbors_query"] = run_queries(store, {"neighbors": NEIGHBORS_QUERY})
                print(f"  neighbors query {report['neighbors_query']['neighbors']}")
            except Exception as exc:  # noqa: BLE001 - search/sync.py is being rewritten: report, go on
                report["neighbors_error"] = repr(exc)
                print(f"neighbors FAILED: {exc!r}")
        report["load_end"] = _load()
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))
    finally:
        if args.keep or args.reuse:  # a reused home is the caller's
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def ok_posters(store: Store) -> int:
    """The ok posters (the rows ``stg_posters`` keeps), for the build's posters per second."""
    return store.db.query("SELECT count(DISTINCT poster_id) FROM raw_posters WHERE status = 'ok'")[0][0]


if __name__ == "__main__":
    main()
