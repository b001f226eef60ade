"""What a platform left running has to survive, measured on a small demo corpus:

1. kill -9 at random moments of the demo pipeline (`poster-assets demo`), each followed by one
   `poster-assets run`: posters with partial, duplicated or missing rows afterwards;
2. two `poster-assets run --all` at once while a loop of `poster-assets sql` reads: runs failed;
3. seconds from `poster-assets ingest NEW --extract` to the new posters being searchable and in
   the marts.

    .venv/bin/python benchmarks/unattended_soak.py --n 12 --kills 10

Each part runs the real CLI in subprocesses against its own POSTER_ASSETS_HOME.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

CLI = [str(Path(sys.executable).with_name("poster-assets"))]
ASSETS = ("ocr_text", "depth_maps", "foreground_masks", "layer_masks", "foreground_embeddings")


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "POSTER_ASSETS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}


def _cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([*CLI, *args], env=_env(home), capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def _audit(home: Path) -> dict[str, int]:
    """Per-poster completeness after the pipeline: ok posters missing a current extraction,
    duplicated rows (same key twice) and partial ones (an extraction without its detail rows)."""
    con = duckdb.connect(str(home / "poster_assets.duckdb"), read_only=True)
    try:
        ok = con.execute("SELECT count(DISTINCT poster_id) FROM raw_posters WHERE status = 'ok'").fetchone()[
            0
        ]
        missing = con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT poster_id FROM raw_posters WHERE status = 'ok') p "
            "CROSS JOIN (SELECT unnest(?) AS asset) a WHERE NOT EXISTS (SELECT 1 FROM extractions e "
            "JOIN current_versions c USING (asset, model_version) "
            "WHERE e.poster_id = p.poster_id AND e.asset = a.asset AND e.status = 'ok')",
            [list(ASSETS)],
        ).fetchone()[0]
        duplicated = con.execute(
            "SELECT count(*) FROM (SELECT source_uri FROM raw_posters GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
        partial = con.execute(
            "SELECT count(*) FROM extractions e WHERE e.status = 'ok' AND ("
            "(asset = 'depth_maps' AND NOT EXISTS (SELECT 1 FROM depth_maps d "
            "WHERE d.poster_id = e.poster_id AND d.model_version = e.model_version)) OR "
            "(asset = 'layer_masks' AND NOT EXISTS (SELECT 1 FROM layer_masks l "
            "WHERE l.poster_id = e.poster_id AND l.model_version = e.model_version)))"
        ).fetchone()[0]
        indexed = con.execute("SELECT count(DISTINCT poster_id) FROM poster_neighbors").fetchone()[0]
        marts = con.execute("SELECT count(*) FROM marts.poster_annotations").fetchone()[0]
    finally:
        con.close()
    return {
        "ok": ok,
        "missing": missing,
        "duplicated": duplicated,
        "partial": partial,
        "not_indexed": ok - indexed,
        "not_in_marts": ok - marts,
    }


def kills(root: Path, n: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    corpus = root / "corpus"
    _cli(root / "gen", "demo-corpus", str(corpus), "--n", str(n))
    # A full demo's duration bounds the kill moments.
    home = root / "timing"
    t0 = time.perf_counter()
    _cli(home, "ingest", str(corpus), "--extract")
    _cli(home, "run")
    full = time.perf_counter() - t0
    print(f"one uninterrupted ingest --extract + run of {n} posters: {full:.0f} s")
    bad = 0
    for i in range(count):
        home = root / f"kill{i}"
        delay = rng.uniform(1.0, full)
        proc = subprocess.Popen(
            [*CLI, "ingest", str(corpus), "--extract"],
            env=_env(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # What a user does next: ingest the folder again (it says what is unfinished) and run.
        _cli(home, "ingest", str(corpus), check=False)
        _cli(home, "run", check=False)
        audit = _audit(home)
        broken = any(audit[k] for k in ("missing", "duplicated", "partial", "not_indexed", "not_in_marts"))
        bad += broken
        print(f"kill {i + 1:2d} at {delay:5.1f} s -> {audit}{'  <-- BROKEN' if broken else ''}")
        shutil.rmtree(home, ignore_errors=True)
    print(f"kill -9 at {count} random moments: {bad} left partial/duplicated/missing rows after one run")


def concurrent(root: Path, n: int) -> None:
    home = root / "concurrent"
    corpus = root / "corpus"
    _cli(home, "ingest", str(corpus), "--extract")
    runs = [
        subprocess.Popen(
            [*CLI, "run", "--all"],
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    reads = failed_reads = 0
    while any(r.poll() is None for r in runs):
        done = _cli(home, "sql", "SELECT count(*) FROM raw_posters", check=False)
        reads += 1
        failed_reads += done.returncode != 0
    failed = [r for r in runs if r.returncode != 0]
    for r in failed:
        print(r.stdout.read()[-3000:])
    print(f"two run --all at once with {reads} reads: {len(failed)} runs failed, {failed_reads} reads failed")


def incremental(root: Path, n: int) -> None:
    home = root / "concurrent"
    later = root / "later"
    _cli(root / "gen", "demo-corpus", str(later), "--n", "2", "--seed", "99")
    t0 = time.perf_counter()
    _cli(home, "ingest", str(later), "--extract")
    took = time.perf_counter() - t0
    image = next(p for p in sorted(later.iterdir()) if p.suffix in (".jpg", ".png"))
    hit = _cli(home, "search", "--image", str(image), "--kind", "poster", "--k", "1", "--format", "json")
    audit = _audit(home)
    print(f"2 new posters on {n}: ingest --extract took {took:.0f} s; search hit {hit.stdout.strip()[:200]}")
    print(f"after it: {audit}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="poster-soak-"))
    try:
        kills(root, args.n, args.kills, args.seed)
        concurrent(root, args.n)
        incremental(root, args.n)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
