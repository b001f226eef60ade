"""FAISS at corpus scale: the index ``choose_index_spec`` picks vs exact brute force.

    .venv/bin/python benchmarks/faiss_scale.py            # 1M x 1280 (about 11 GiB peak)
    .venv/bin/python benchmarks/faiss_scale.py --n 100000 # quick

Vectors: ``--clusters`` Gaussian clusters on the unit sphere. Real CNN features are far from
isotropic, so centres and noise share a decaying spectrum (variance of the i-th direction
~ 1/i) under one random rotation; with isotropic noise in 1280-d every neighbour is almost
equidistant and no index (nor embedding) would be meaningful. Queries are held out (drawn
from the same distribution, not indexed).

Exact (IndexFlatIP) and approximate are measured in the same run, best of ``--repeats``,
because the machine may be shared.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from poster_assets.search.index import build_index, choose_index_spec, recall_at_k

_CHUNK = 50_000


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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)


def _index_bytes(index: faiss.Index) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.faiss"
        faiss.write_index(index, str(path))
        return path.stat().st_size


def _latencies(index: faiss.Index, queries: np.ndarray, k: int) -> np.ndarray:
    out = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], k)
        out.append(time.perf_counter() - t)
    return np.array(out)


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


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
    args = ap.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(f"n={args.n} dim={args.dim} clusters={args.clusters} threads={faiss.omp_get_max_threads()}")

    gen = ClusteredVectors(args.dim, args.clusters)
    t = time.perf_counter()
    # Vectors go straight into the exact index; its storage doubles as the benchmark's copy.
    exact = faiss.IndexFlatIP(args.dim)
    for start in range(0, args.n, _CHUNK):
        exact.add(gen.draw(min(_CHUNK, args.n - start)))
    xb = faiss.rev_swig_ptr(exact.get_xb(), args.n * args.dim).reshape(args.n, args.dim)
    queries = gen.draw(args.queries)
    t_exact_build = time.perf_counter() - t
    print(f"generated + exact index: {t_exact_build:.1f}s, peak RSS {_peak_rss_gib():.1f} GiB", flush=True)

    ids = [hashlib.sha256(i.to_bytes(8, "little")).hexdigest() for i in range(args.n)]
    spec = choose_index_spec(args.n, args.dim)
    t = time.perf_counter()
    approx = build_index(xb, ids, spec, kind="bench", model_version="synthetic")
    t_build = time.perf_counter() - t
    print(
        f"approx {approx.spec.factory} nprobe={approx.spec.nprobe} k_factor={approx.spec.k_factor:g}: "
        f"built in {t_build:.1f}s, peak RSS {_peak_rss_gib():.1f} GiB",
        flush=True,
    )

    k = args.k
    recall = recall_at_k(approx, xb, queries, k=k)
    lat_q = queries[: args.latency_queries]
    exact_lat = _latencies(exact, lat_q[: max(5, args.latency_queries // 10)], k)  # ~0.3 s each at 1M
    approx_lat = _latencies(approx.index, lat_q, k)
    exact_batch = _best_time(lambda: exact.search(queries, k), args.repeats)
    approx_batch = _best_time(lambda: approx.index.search(queries, k), args.repeats)
    exact_bytes, approx_bytes = args.n * args.dim * 4, _index_bytes(approx.index)

    rows = [
        ("build time (s)", t_exact_build, t_build),
        ("index bytes (GiB)", exact_bytes / (1 << 30), approx_bytes / (1 << 30)),
        ("p50 single query (ms)", np.percentile(exact_lat, 50) * 1e3, np.percentile(approx_lat, 50) * 1e3),
        ("p99 single query (ms)", np.percentile(exact_lat, 99) * 1e3, np.percentile(approx_lat, 99) * 1e3),
        (f"batch throughput ({args.queries} q/s)", args.queries / exact_batch, args.queries / approx_batch),
        (f"recall@{k}", 1.0, recall),
    ]
    print(f"\n{'metric':<32}{'exact':>12}{'approx':>12}{'approx/exact':>14}")
    for name, e, a in rows:
        print(f"{name:<32}{e:>12.3f}{a:>12.3f}{a / e:>14.3f}")
    print(f"\npeak RSS {_peak_rss_gib():.1f} GiB; exact build time includes generating the vectors")
    speedup = exact_batch / approx_batch
    verdict = "MET" if recall >= 0.95 and speedup >= 20 else "NOT MET"
    print(f"target recall@10 >= 0.95 at >= 20x exact throughput: {verdict} ({recall:.3f}, {speedup:.1f}x)")


if __name__ == "__main__":
    main()
