"""FAISS at corpus scale: the index ``choose_index_spec`` picks vs exact brute force.

    .venv/bin/python benchmarks/faiss_scale.py            # 1M x 1280 (about 6 GiB peak, 5 GiB disk)
    .venv/bin/python benchmarks/faiss_scale.py --n 100000 # quick
    .venv/bin/python benchmarks/faiss_scale.py --shards 2 --workers 1 2  # sharded, 1 then 2 builders
    .venv/bin/python benchmarks/faiss_scale.py --sync --n 300000 --shards 2  # the asset's rebuild from DuckDB

Vectors: ``--clusters`` Gaussian clusters on the unit sphere. Real CNN features are far from
isotropic, so centres and noise share a decaying spectrum (variance of the i-th direction
~ 1/i) under one random rotation; with isotropic noise in 1280-d every neighbour is almost
equidistant and no index (nor embedding) would be meaningful. Queries are held out (drawn
from the same distribution, not indexed).

Exact (IndexFlatIP) and approximate are measured in the same run, best of ``--repeats``,
because the machine may be shared.

The vectors are written to a float32 file (``--workdir``, a temporary folder by default) and
the approximate index is built from it, saved, and loaded again in child processes, so that
their memory is measured apart from the benchmark's own copy of the vectors. With
``--shards S`` the vectors go to one file per shard (by poster-id range, ``index.shard_of``),
each shard is built in its own process, as ``sync.build_shard`` does, ``--workers`` at a time
(``--workers 1 2``: built twice, and both wall times reported; each worker gets the cores
divided among the workers as OpenMP threads), then published with one manifest and searched
merged (``ShardedIndex``):

- build peak RSS: ``VmHWM`` of each building process (file reads do not count, the page
  cache is not the process's memory, but pages of the memory-mapped re-ranking vectors that
  ``tune_nprobe``'s searches touch do), and the peak of ``RssAnon`` (the process's own
  memory) sampled every 10 ms;
- loaded index RSS: ``VmRSS`` of a fresh process after ``PosterIndex.load`` minus before (the
  FAISS index and the poster-id map); then, after searching all the
  queries, the growth of ``RssAnon`` (the process's own memory) and ``RssFile`` (pages of the
  memory-mapped re-ranking vectors: page cache, shared and reclaimable, not counted as the
  index's RAM).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from poster_assets.search.index import (
    DEFAULT_MEMORY_BUDGET,
    PosterIndex,
    RawVectorFile,
    ShardedIndex,
    build_index,
    choose_index_spec,
    recall_at_k,
    shard_folder,
    shard_of,
    write_manifest,
)
from poster_assets.search.sync import index_recall, sync_index
from poster_assets.storage.store import HomeStore

_CHUNK = 50_000
_SYNC_VERSION = "bench:synthetic"


class ClusteredVectors:
    """Reproducible unit vectors around ``clusters`` centres, drawn in chunks."""

    def __init__(self, dim: int, clusters: int, seed: int = 0, sigma: float = 1.0) -> None:
        rng = np.random.default_rng(seed)
        spectrum = (1.0 + np.arange(dim)) ** -0.5
        self.spectrum = (spectrum / np.linalg.norm(spectrum)).astype(np.float32)
        self.rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
        self.centres = self._shape(rng.standard_normal((clusters, dim), np.float32))
        self.centres /= np.linalg.norm(self.centres, axis=1, keepdims=True)
        self.sigma = sigma
        self.rng = rng

    def _shape(self, z: np.ndarray) -> np.ndarray:
        return (z * self.spectrum) @ self.rotation

    def draw(self, m: int) -> np.ndarray:
        labels = self.rng.integers(len(self.centres), size=m)
        x = self.centres[labels] + self.sigma * self._shape(
            self.rng.standard_normal((m, self.centres.shape[1]), np.float32)
        )
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def _peak_rss_gib() -> float:
    """Peak RSS of this process since it started: ``VmHWM``, not ``ru_maxrss``, which a spawned
    child inherits across exec from the moment it was forked (its parent's RSS)."""
    return _vm_rss("VmHWM") / (1 << 30)


def _vm_rss(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) << 10
    raise RuntimeError(f"no {field} in /proc/self/status")


def _ids(stop: int, start: int = 0) -> list[str]:
    return [hashlib.sha256(i.to_bytes(8, "little")).hexdigest() for i in range(start, stop)]


def _build_child(
    path: str, ids: list[str], dim: int, folder: str, threads: int, budget: int
) -> dict[str, Any]:
    """Build and save the index (or one shard) from its vector file in this (child) process:
    its peak RSS is the build's alone."""
    if threads:
        faiss.omp_set_num_threads(threads)
    peak_anon, done = [0], threading.Event()

    def sample() -> None:  # getrusage has no peak of anonymous memory alone
        while not done.wait(0.01):
            peak_anon[0] = max(peak_anon[0], _vm_rss("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    spec = choose_index_spec(len(ids), dim, budget)
    t = time.perf_counter()
    index = build_index(RawVectorFile(path, dim), ids, spec, kind="bench", model_version="synthetic")
    seconds = time.perf_counter() - t
    index.save(folder)
    done.set()
    sampler.join()
    return {
        "seconds": seconds,
        "peak_rss": _peak_rss_gib(),
        "peak_anon": peak_anon[0] / (1 << 30),
        "spec": index.spec.to_dict(),
    }


def _load_child(folder: str, queries: np.ndarray, k: int) -> dict[str, Any]:
    """RSS that loading the saved index (FAISS index and id map) adds to a fresh process, and
    what searching adds (own memory vs mapped file pages). Nothing is loaded before, so no
    freed heap is reused and hides part of it."""
    before, anon, mapped = _vm_rss(), _vm_rss("RssAnon"), _vm_rss("RssFile")
    loaded = PosterIndex.load(folder, verify=False)  # all shards, where there is a manifest
    after_load = _vm_rss() - before
    loaded.search_positions(queries, k)
    return {
        "poster_index_rss": after_load,
        "anon_after_queries": _vm_rss("RssAnon") - anon,
        "file_after_queries": _vm_rss("RssFile") - mapped,
    }


def _index_bytes(index: faiss.Index) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.faiss"
        faiss.write_index(index, str(path))
        return path.stat().st_size


def _latencies(search: Callable[[np.ndarray, int], Any], queries: np.ndarray, k: int) -> np.ndarray:
    out = []
    for q in queries:
        t = time.perf_counter()
        search(q[None], k)
        out.append(time.perf_counter() - t)
    return np.array(out)


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _write_shards(gen: ClusteredVectors, n: int, shards: int, tmp: Path) -> list[tuple[Path, list[str]]]:
    """The vectors in one float32 file per shard (rows in generation order within it), with
    the poster ids of each file's rows; one shard: one file of every vector, as before."""
    parts = [(tmp / f"vectors-{s}.f32", []) for s in range(shards)]
    files = [open(path, "wb") for path, _ in parts]  # noqa: SIM115 (closed below)
    try:
        for start in range(0, n, _CHUNK):
            x, ids = gen.draw(min(_CHUNK, n - start)), _ids(min(start + _CHUNK, n), start)
            where = np.array([shard_of(pid, shards) for pid in ids])
            for s, (_, shard_ids) in enumerate(parts):
                rows = np.nonzero(where == s)[0]
                x[rows].tofile(files[s])
                shard_ids.extend(ids[r] for r in rows)
    finally:
        for f in files:
            f.close()
    return parts


def _build_all(
    parts: list[tuple[Path, list[str]]], dim: int, folder: Path, workers: int, threads: int
) -> tuple[float, list[dict[str, Any]]]:
    """Build every shard, each in a fresh process, ``workers`` at a time; then the manifest.
    Returns the wall time (process starts included) and each child's figures."""
    shards = len(parts)
    threads = threads or max(1, multiprocessing.cpu_count() // workers)
    ctx = multiprocessing.get_context("spawn")
    t = time.perf_counter()
    with ctx.Pool(workers, maxtasksperchild=1) as pool:
        jobs = [
            pool.apply_async(
                _build_child,
                (
                    str(path),
                    ids,
                    dim,
                    str(shard_folder(folder, s, shards) if shards > 1 else folder),
                    threads,
                    DEFAULT_MEMORY_BUDGET // shards,
                ),
            )
            for s, (path, ids) in enumerate(parts)
        ]
        children = [job.get() for job in jobs]
    if shards > 1:
        write_manifest(folder, shards)
    return time.perf_counter() - t, children


def _fill_home(home: Path, gen: ClusteredVectors, n: int, dim: int) -> HomeStore:
    """A home whose ``foreground_embeddings`` hold ``n`` generated vectors (ids as elsewhere).
    Rows go in as flat numpy columns regrouped into lists by DuckDB: Python lists of floats
    would take hours at 1M x 1280."""
    store = HomeStore(home)
    step, per_commit = 5_000, 50_000
    # A transaction per 50k rows: DuckDB holds a transaction's rows in memory until it commits
    # (one transaction of 1M x 1280 was killed for memory).
    for first in range(0, n, per_commit):
        with store.db.transaction() as conn:
            for start in range(first, min(first + per_commit, n), step):
                m = min(step, n - start)
                columns = {
                    "pid": np.repeat(np.array(_ids(start + m, start), dtype=object), dim),
                    "p": np.tile(np.arange(dim), m),
                    "v": gen.draw(m).ravel(),
                }
                conn.register("chunk", columns)
                conn.execute(
                    "INSERT INTO foreground_embeddings SELECT pid, 'foreground', ?, ?, list(v ORDER BY p) "
                    "FROM chunk GROUP BY pid",
                    [_SYNC_VERSION, dim],
                )
                conn.unregister("chunk")
    return store


def _sync_child(home: str, shards: int, workers: int) -> dict[str, Any]:
    """``sync_index`` (a full rebuild from DuckDB) and ``index_recall`` in this process."""
    peak_anon, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak_anon[0] = max(peak_anon[0], _vm_rss("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    store = HomeStore(Path(home))
    t = time.perf_counter()
    update = sync_index(
        store, "foreground", _SYNC_VERSION, shards=shards if shards > 1 else None, workers=workers
    )
    seconds = time.perf_counter() - t
    sync_peak = _peak_rss_gib()
    t = time.perf_counter()
    recall = index_recall(update.index, update.vectors) if update.index else 0.0
    recall_seconds = time.perf_counter() - t
    done.set()
    sampler.join()
    shards = update.index.shards if isinstance(update.index, ShardedIndex) else [update.index]
    return {
        "mode": update.mode,
        "shards": len(shards),
        "type": update.index.spec.kind if update.index else "",
        "seconds": seconds,
        "sync_peak": sync_peak,
        "recall": recall,
        "recall_seconds": recall_seconds,
        "peak": _peak_rss_gib(),
        "peak_anon": peak_anon[0] / (1 << 30),
        # ru_maxrss: at most this (it includes this process's RSS when the worker was forked).
        "worker_peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / (1 << 20),
    }


def _run_sync(args: argparse.Namespace, tmp: Path) -> None:
    """The product's own rebuild: vectors in DuckDB, ``sync_index`` in a fresh process."""
    gen = ClusteredVectors(args.dim, args.clusters)
    t = time.perf_counter()
    _fill_home(tmp / "home", gen, args.n, args.dim)
    print(f"DuckDB home filled with {args.n} vectors: {time.perf_counter() - t:.1f}s", flush=True)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        r = pool.apply(_sync_child, (str(tmp / "home"), args.shards, args.workers[-1]))
    print(
        f"sync_index {r['mode']} ({r['shards']} shard(s), {r['type']}, {args.workers[-1]} worker(s)): "
        f"{r['seconds']:.1f}s, peak RSS {r['sync_peak']:.2f} GiB; then index_recall {r['recall']:.3f} "
        f"in {r['recall_seconds']:.1f}s; process peak RSS {r['peak']:.2f} GiB "
        f"(RssAnon {r['peak_anon']:.2f} GiB), shard worker processes' peak {r['worker_peak']:.2f} GiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--latency-queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="OpenMP threads (0: FAISS default)")
    ap.add_argument("--workdir", type=Path, default=None, help="for the vector file and the index")
    ap.add_argument(
        "--sync", action="store_true", help="instead: vectors in DuckDB, rebuilt by sync_index (peak RSS)"
    )
    ap.add_argument("--shards", type=int, default=1, help="split by poster-id range, a shard per process")
    ap.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        help="build processes at once; several: build once each",
    )
    args = ap.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(
        f"n={args.n} dim={args.dim} clusters={args.clusters} threads={faiss.omp_get_max_threads()} "
        f"shards={args.shards} workers={args.workers}"
    )
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        (_run_sync if args.sync else _run)(args, Path(tmp))


def _run(args: argparse.Namespace, tmp: Path) -> None:
    gen = ClusteredVectors(args.dim, args.clusters)
    t = time.perf_counter()
    parts = _write_shards(gen, args.n, args.shards, tmp)
    queries = gen.draw(args.queries)
    print(
        f"generated: {time.perf_counter() - t:.1f}s; shard sizes {[len(ids) for _, ids in parts]}", flush=True
    )

    folder = tmp / "index"
    walls = {}
    for workers in args.workers:
        walls[workers], children = _build_all(parts, args.dim, folder, workers, args.threads)
        peaks = ", ".join(f"{c['peak_rss']:.2f}" for c in children)
        each = ", ".join(f"{c['seconds']:.0f}" for c in children)
        print(
            f"{args.shards} shard(s) built by {workers} worker process(es) in {walls[workers]:.1f}s wall "
            f"(build_index per shard: {each} s); peak RSS per worker process [{peaks}] GiB",
            flush=True,
        )
    # Children, so that each peak is its own; spawn, so none inherits this process's memory.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        rss = pool.apply(_load_child, (str(folder), queries, args.k))
    t_build = walls[args.workers[-1]]
    built = {
        "peak_rss": max(c["peak_rss"] for c in children),
        "peak_anon": max(c["peak_anon"] for c in children),
    }
    spec, nprobes = children[0]["spec"], [c["spec"]["nprobe"] for c in children]
    print(
        f"approx {spec['factory']} nprobe={nprobes} k_factor={spec['k_factor']:g}: "
        f"built from the file(s) in {t_build:.1f}s, build peak RSS {built['peak_rss']:.2f} GiB "
        f"(RssAnon {built['peak_anon']:.2f} GiB); loaded "
        f"PosterIndex (FAISS index + id map, all shards) RSS {rss['poster_index_rss'] / (1 << 30):.3f} GiB; "
        f"after {args.queries} queries RssAnon "
        f"+{rss['anon_after_queries'] / (1 << 30):.3f} GiB, RssFile (mapped vectors) "
        f"+{rss['file_after_queries'] / (1 << 30):.3f} GiB",
        flush=True,
    )

    t = time.perf_counter()
    exact = faiss.IndexFlatIP(args.dim)
    for path, _ in parts:  # in shard order: row i of the exact index is position i of the merged index
        source = RawVectorFile(path, args.dim)
        for start in range(0, source.shape[0], _CHUNK):
            exact.add(source.rows(start, start + _CHUNK))
    xb = faiss.rev_swig_ptr(exact.get_xb(), args.n * args.dim).reshape(args.n, args.dim)
    t_exact_build = time.perf_counter() - t
    approx = PosterIndex.load(folder)

    k = args.k
    recall = recall_at_k(approx, xb, queries, k=k)
    lat_q = queries[: args.latency_queries]
    exact_lat = _latencies(exact.search, lat_q[: max(5, args.latency_queries // 10)], k)  # ~0.3 s each at 1M
    # search_positions: FAISS plus the re-ranking PosterIndex does itself for some index types.
    approx_lat = _latencies(approx.search_positions, lat_q, k)
    exact_batch = _best_time(lambda: exact.search(queries, k), args.repeats)
    approx_batch = _best_time(lambda: approx.search_positions(queries, k), args.repeats)
    shards = approx.shards if isinstance(approx, ShardedIndex) else [approx]
    exact_bytes, approx_bytes = args.n * args.dim * 4, sum(_index_bytes(s.index) for s in shards)
    on_disk = sum(f.stat().st_size for f in folder.glob("**/data-*/*"))
    print(
        f"approx index folder on disk: {on_disk / (1 << 30):.3f} GiB (FAISS file + ids + re-ranking vectors)"
    )

    if len(walls) > 1:
        print("build wall time by worker processes: " + ", ".join(f"{w}: {t:.1f}s" for w, t in walls.items()))
    rows = [
        ("build time (s)", t_exact_build, t_build),
        ("FAISS index bytes (GiB)", exact_bytes / (1 << 30), approx_bytes / (1 << 30)),
        ("p50 single query (ms)", np.percentile(exact_lat, 50) * 1e3, np.percentile(approx_lat, 50) * 1e3),
        ("p99 single query (ms)", np.percentile(exact_lat, 99) * 1e3, np.percentile(approx_lat, 99) * 1e3),
        (f"batch throughput ({args.queries} q/s)", args.queries / exact_batch, args.queries / approx_batch),
        (f"recall@{k}", 1.0, recall),
    ]
    print(f"\n{'metric':<32}{'exact':>12}{'approx':>12}{'approx/exact':>14}")
    for name, e, a in rows:
        print(f"{name:<32}{e:>12.3f}{a:>12.3f}{a / e:>14.3f}")
    print(f"\nbenchmark process peak RSS {_peak_rss_gib():.1f} GiB (it holds the exact index)")
    speedup = exact_batch / approx_batch
    index_gib = rss["poster_index_rss"] / (1 << 30)
    met = recall >= 0.95 and speedup >= 50 and index_gib <= 0.6 and built["peak_rss"] < 4
    print(
        f"target recall@10 >= 0.95, >= 50x exact throughput, loaded index <= 0.6 GiB, build peak < 4 GiB: "
        f"{'MET' if met else 'NOT MET'} ({recall:.3f}, {speedup:.1f}x, {index_gib:.3f} GiB, "
        f"{built['peak_rss']:.2f} GiB)"
    )


if __name__ == "__main__":
    main()
