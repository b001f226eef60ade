"""What the lake costs a chunk, and how long it holds the database (issue 14, part 1).

    .venv/bin/python benchmarks/lake_writes.py                 # 60 chunks of 16 posters over 20k posters
    .venv/bin/python benchmarks/lake_writes.py --chunks 200 --prefill 100000

A chunk is what the two batch steps write for 16 posters: the extraction pass its OCR lines,
a depth map and a foreground mask record each and their layers, the embeddings step three kinds
(1280, 1280 and 768 floats), each with its ``extractions`` records. Three ways to write the
same chunks into a home whose database already holds ``--prefill`` posters' rows, each
measured in this run:

- **baseline, one transaction**: the write before the lake (``runner.write_chunk`` up to
  2f337a3^): delete by key and insert into the database file, inside one transaction. The
  whole of it holds the file.
- **lake, the worker's part**: ``Lake.write_segment`` (rows checked by the schema in an
  in-memory DuckDB, Parquet files under a ``.tmp-*`` folder, renamed). It holds nothing.
- **lake, the catalog's part**: ``refresh_catalog`` applying that one segment. Only this
  holds the file.

Then 16 waiting segments (a batch's chunks left in the lake while the catalog was busy) applied
one by one against together in one refresh, a refresh with nothing to apply (the listing of
segments on disk against ``lake_segments``), and the database rebuilt from the lake alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poster_assets.storage.catalog import rebuild_catalog, refresh_catalog  # noqa: E402
from poster_assets.storage.columns import table_columns  # noqa: E402
from poster_assets.storage.database import Database  # noqa: E402
from poster_assets.storage.lake import LAKE_TABLES, apply_segments  # noqa: E402

CHUNK = 16
KINDS = {"foreground": 1280, "poster": 1280, "pixels": 768}


def _id(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def chunk_rows(start: int, batch: str, rng: np.random.Generator) -> dict[str, list[dict[str, Any]]]:
    now = dt.datetime.now(dt.UTC)
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in LAKE_TABLES if t != "raw_posters"}
    for i in range(start, start + CHUNK):
        pid = _id(i)
        out["ocr_text"] += [
            {
                "poster_id": pid,
                "model_version": "ocr-v1",
                "line_index": j,
                "text": f"line {j} of {i}",
                "confidence": 0.9,
                "polygon": [0.0, 0.0, 9.0, 0.0, 9.0, 4.0, 0.0, 4.0],
                "box": [0, 0, 9, 4],
            }
            for j in range(6)
        ]
        out["depth_maps"].append(
            {
                "poster_id": pid,
                "model_version": "depth-v1",
                "depth_path": f"blobs/depth/{pid}.png",
                "width": 512,
                "height": 768,
                "depth_min": 0.0,
                "depth_max": 1.0,
                "depth_mean": 0.5,
                "histogram": [1 / 32] * 32,
                "modes": [0.2, 0.7],
            }
        )
        out["foreground_masks"].append(
            {
                "poster_id": pid,
                "model_version": "fg-v1",
                "mask_path": f"blobs/fg/{pid}.png",
                "area_fraction": 0.3,
                "bbox": [10, 10, 200, 300],
                "mean_probability": 0.3,
            }
        )
        out["layer_masks"] += [
            {
                "poster_id": pid,
                "model_version": "layers-v1",
                "layer_index": k,
                "depth_rank": k,
                "role": ("background", "other", "subject", "title")[k],
                "area_fraction": 0.25,
                "bbox": [0, 0, 100, 100],
                "mean_depth": k / 4,
                "k": 4,
                "title_text": "TITLE" if k == 3 else None,
                "title_box": [0, 0, 50, 10] if k == 3 else None,
                "labels_path": f"blobs/layers/{pid}.png",
                "method_version": "fused-v1",
                "depth_version": "depth-v1",
                "foreground_version": "fg-v1",
                "ocr_version": "ocr-v1",
            }
            for k in range(4)
        ]
        for kind, dim in KINDS.items():
            v = rng.standard_normal(dim).astype(np.float32)
            out["foreground_embeddings"].append(
                {
                    "poster_id": pid,
                    "kind": kind,
                    "model_version": f"{kind}-v1",
                    "dim": dim,
                    "embedding": (v / np.linalg.norm(v)).tolist(),
                }
            )
        for asset in ("ocr_text", "depth_maps", "foreground_masks", "layer_masks", "foreground_embeddings"):
            out["extractions"].append(
                {
                    "asset": asset,
                    "poster_id": pid,
                    "model_version": "v1",
                    "status": "ok",
                    "error": None,
                    "batch": batch,
                    "seconds": 0.5,
                    "extracted_at": now,
                }
            )
    return out


# What each step writes per chunk: the extraction pass, then the embeddings.
STEPS = {
    "extraction pass": ("ocr_text", "depth_maps", "foreground_masks", "layer_masks", "extractions"),
    "embeddings": ("foreground_embeddings", "extractions"),
}


def split(rows: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """A chunk's rows as the two steps write them."""
    embedded = [r for r in rows["extractions"] if r["asset"] == "foreground_embeddings"]
    extracted = [r for r in rows["extractions"] if r["asset"] != "foreground_embeddings"]
    return {
        "extraction pass": {t: rows[t] for t in STEPS["extraction pass"][:-1]} | {"extractions": extracted},
        "embeddings": {"foreground_embeddings": rows["foreground_embeddings"], "extractions": embedded},
    }


def baseline_write(db: Database, tables: dict[str, list[dict[str, Any]]]) -> None:
    """The pre-lake chunk write: delete by key, insert, in one transaction on the file."""
    with db.transaction() as conn:
        for table, rows in tables.items():
            key = table_columns(table).primary_key
            keys = dict.fromkeys(tuple(r[c] for c in key) for r in rows)
            columns = [list(c) for c in zip(*keys, strict=True)]
            unnested = ", ".join(f"unnest(?) AS {c}" for c in key)
            match = " AND ".join(f"{table}.{c} = k.{c}" for c in key)
            conn.execute(f"DELETE FROM {table} USING (SELECT {unnested}) AS k WHERE {match}", columns)
            cols = list(rows[0])
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                [[r[c] for c in cols] for r in rows],
            )


def prefill(db: Database, posters: int, rng: np.random.Generator) -> None:
    """``posters`` posters' rows straight into the file (not timed): the size the writes meet."""
    db.ensure_schema()
    with db.transaction() as conn:
        for start in range(10_000_000, 10_000_000 + posters, 2000):
            n = min(2000, 10_000_000 + posters - start)
            conn.execute(
                "INSERT INTO ocr_text SELECT sha256(i::VARCHAR), 'ocr-v1', j, 'x', 0.9, "
                "[0,0,9,0,9,4,0,4]::DOUBLE[8], [0,0,9,4]::INTEGER[4] FROM range(?, ?) r(i), range(6) l(j)",
                [start, start + n],
            )
            conn.execute(
                "INSERT INTO extractions SELECT a, sha256(i::VARCHAR), 'v1', 'ok', NULL, 'old', 0.5, now() "
                "FROM range(?, ?) r(i), (VALUES ('ocr_text'), ('depth_maps'), ('foreground_masks'), "
                "('layer_masks'), ('foreground_embeddings')) t(a)",
                [start, start + n],
            )
            vectors = rng.standard_normal((n, 1280)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            conn.execute(
                "INSERT INTO foreground_embeddings SELECT sha256((? + i)::VARCHAR), 'foreground', "
                "'foreground-v1', 1280, v FROM (SELECT unnest(?) AS v, generate_subscripts(?, 1) - 1 AS i)",
                [start, vectors.tolist(), vectors.tolist()],
            )


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[int(0.9 * (len(values) - 1))]
    return f"median {statistics.median(values) * 1e3:6.1f} ms, p90 {p90 * 1e3:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=60)
    parser.add_argument("--prefill", type=int, default=20_000, help="posters already in the database")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    root = Path(tempfile.mkdtemp(prefix="lake-bench-", dir=args.workdir))
    print(
        f"load average {os.getloadavg()[0]:.1f}; {args.chunks} chunks of {CHUNK} posters; "
        f"{args.prefill} posters in the database first"
    )
    try:
        dbs = {name: Database(root / name / "poster_assets.duckdb") for name in ("baseline", "lake")}
        for db in dbs.values():
            prefill(db, args.prefill, rng)
        refresh_catalog(dbs["lake"])  # the prefilled rows exported once, as an old home's would be
        chunks = [chunk_rows(i * CHUNK, "b", rng) for i in range(args.chunks)]
        base: dict[str, list[float]] = {step: [] for step in STEPS}
        worker: dict[str, list[float]] = {step: [] for step in STEPS}
        apply_: dict[str, list[float]] = {step: [] for step in STEPS}
        # Interleaved, so that a slower minute of a shared machine falls on both.
        for rows in chunks:
            for step, tables in split(rows).items():
                t0 = time.perf_counter()
                baseline_write(dbs["baseline"], tables)
                t1 = time.perf_counter()
                dbs["lake"].lake.write_segment("b", tables)
                t2 = time.perf_counter()
                refresh_catalog(dbs["lake"], "b")
                t3 = time.perf_counter()
                base[step].append(t1 - t0)
                worker[step].append(t2 - t1)
                apply_[step].append(t3 - t2)
        counts = {
            name: [db.query(f"SELECT count(*) FROM {t}") for t in LAKE_TABLES] for name, db in dbs.items()
        }
        for step in STEPS:
            print(f"{step}: {', '.join(STEPS[step])}")
            print(f"  baseline, one transaction (holds the file): {_ms(base[step])}")
            print(f"  lake, the worker's segment (holds nothing):  {_ms(worker[step])}")
            print(f"  lake, applying it (holds the file):          {_ms(apply_[step])}")
        held = sum(statistics.median(apply_[s]) for s in STEPS)
        whole = held + sum(statistics.median(worker[s]) for s in STEPS)
        baseline = sum(statistics.median(base[s]) for s in STEPS)
        print(
            f"per {CHUNK} posters, both steps: the file held {held * 1e3:.0f} ms, {held / baseline:.2f}x the "
            f"baseline's {baseline * 1e3:.0f} ms; the writers' whole time {whole / baseline:.2f}x; "
            f"same rows in both: {counts['baseline'] == counts['lake']}"
        )
        # A batch's chunks left in the lake by a busy catalog, applied at the step's end: one
        # refresh applies them together; the baseline applies the same kind of segments one by one.
        waiting = {
            how: [
                dbs["lake"].lake.write_segment(how, chunk_rows((args.chunks + 16 * n + i) * CHUNK, how, rng))
                for i in range(16)
            ]
            for n, how in enumerate(("one-by-one", "together"))
        }
        t0 = time.perf_counter()
        with dbs["lake"].transaction() as conn:
            for segment in waiting["one-by-one"]:
                apply_segments(conn, [segment])
        alone = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = refresh_catalog(dbs["lake"], "together")
        together = time.perf_counter() - t0
        print(
            f"16 waiting segments ({done.rows} rows): one by one {alone:.2f} s, "
            f"in one refresh {together:.2f} s ({alone / together:.1f}x faster)"
        )
        t0 = time.perf_counter()
        for _ in range(10):
            refresh_catalog(dbs["lake"])
        print(
            f"a refresh with nothing to apply over {len(dbs['lake'].lake.segments())} segments: "
            f"{(time.perf_counter() - t0) / 10 * 1e3:.1f} ms"
        )
        t0 = time.perf_counter()
        rebuilt = rebuild_catalog(dbs["lake"])
        print(
            f"the database rebuilt from the lake alone: {rebuilt.segments} segments, {rebuilt.rows} rows "
            f"in {time.perf_counter() - t0:.1f} s"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
