"""One FAISS similarity index per embedding kind, with its poster-id map.

Vectors are L2-normalised, so inner product is cosine similarity. FAISS numbers vectors
0..n-1 in the order they were added; ``PosterIndex`` keeps the poster ids (sha256 hex
strings) in that same order, so position ``i`` in FAISS is ``ids[i]``. Posters are never
removed from an index (a removal is a rebuild), which keeps the positional map valid.

Index types (``choose_index_spec``), measured on 1280-d clustered vectors (benchmarks/faiss_scale.py):

- ``flat``: exact ``IndexFlatIP`` below 50k vectors, where brute force is already fast.
- ``ivf_sq8_refine``: PCA to 256-d, IVF with 8-bit scalar-quantised codes to pick candidates,
  then exact re-ranking of ``k_factor * k`` candidates on the full float vectors. Full-dim
  IVF-Flat was 5-10x slower at equal recall, and HNSW builds far slower at this width.
- ``ivf_pq_refine``: when the float vectors would not fit the memory budget, PQ fast-scan
  codes pick candidates and the re-ranking uses 8-bit codes of the full vectors (~4x smaller).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from poster_assets.storage.files import atomic_dir, atomic_write_text, file_sha256

FLAT_MAX = 50_000
PCA_DIM = 256
DEFAULT_MEMORY_BUDGET = 8 << 30  # bytes of float vectors kept for exact re-ranking
FORMAT_VERSION = 1
_META = "meta.json"
_INDEX_FILE = "index.faiss"
_IDS_FILE = "ids.txt"
_ADD_CHUNK = 100_000


class IndexLoadError(RuntimeError):
    """An index folder could not be loaded; callers rebuild the index."""


class IndexMissingError(IndexLoadError):
    """No saved index (or one of its files) at the given folder."""


class IndexCorruptError(IndexLoadError):
    """A saved index exists but is unreadable or inconsistent (checksum, counts, dim)."""


@dataclasses.dataclass(frozen=True)
class IndexSpec:
    """How to build one index: a FAISS factory string plus its search-time parameters."""

    kind: str  # "flat" | "ivf_sq8_refine" | "ivf_pq_refine"
    dim: int
    factory: str
    nlist: int = 0
    nprobe: int = 0
    k_factor: float = 0.0
    train_size: int = 0

    @property
    def search_params(self) -> str:
        params = []
        if self.nprobe:
            params.append(f"nprobe={self.nprobe}")
        if self.k_factor:
            params.append(f"k_factor_rf={self.k_factor:g}")
        return ",".join(params)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexSpec:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def choose_index_spec(n: int, dim: int, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> IndexSpec:
    """Pick the index type for ``n`` vectors of width ``dim``."""
    if n < FLAT_MAX:
        return IndexSpec(kind="flat", dim=dim, factory="Flat")
    nlist = int(4 * math.sqrt(n))
    # k-means wants >= 39 points per centroid; more only slows training.
    train_size = min(n, 40 * nlist)
    reduce = f"PCA{PCA_DIM}," if dim > PCA_DIM else ""
    coarse_dim = min(dim, PCA_DIM)
    if n * dim * 4 <= memory_budget:
        factory = f"{reduce}IVF{nlist},SQ8,RFlat"
        return IndexSpec("ivf_sq8_refine", dim, factory, nlist, nprobe=16, k_factor=8, train_size=train_size)
    m = coarse_dim // 2  # 4-bit fast-scan PQ: 2 dims per sub-quantizer
    factory = f"{reduce}IVF{nlist},PQ{m}x4fs,Refine(SQ8)"
    return IndexSpec("ivf_pq_refine", dim, factory, nlist, nprobe=16, k_factor=8, train_size=train_size)


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {x.shape}")
    return np.ascontiguousarray(x)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


class PosterIndex:
    """A FAISS index plus the poster ids of its rows, its spec and provenance."""

    def __init__(
        self,
        index: faiss.Index,
        ids: Sequence[str],
        spec: IndexSpec,
        kind: str = "",
        model_version: str = "",
        trained_count: int = 0,
    ) -> None:
        if index.ntotal != len(ids):
            raise ValueError(f"index holds {index.ntotal} vectors but {len(ids)} ids were given")
        self.index = index
        self.kind = kind
        self.model_version = model_version
        self.trained_count = trained_count
        self._ids = list(ids)
        self._pos = {pid: i for i, pid in enumerate(self._ids)}
        self._set_params(spec)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def count(self) -> int:
        return len(self._ids)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def __contains__(self, poster_id: str) -> bool:
        return poster_id in self._pos

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> int:
        """Append vectors without retraining; ids already present are skipped (a poster id is
        a content hash, so its vector for this model version cannot have changed).
        Returns how many were added."""
        x = _as_matrix(vectors, self.dim)
        if len(ids) != len(x):
            raise ValueError(f"{len(x)} vectors but {len(ids)} ids")
        keep, fresh = [], []
        seen = set(self._pos)
        for i, pid in enumerate(ids):
            if pid not in seen:
                seen.add(pid)
                keep.append(i)
                fresh.append(str(pid))
        if not keep:
            return 0
        if len(keep) != len(x):
            x = x[keep]
        for start in range(0, len(x), _ADD_CHUNK):
            self.index.add(x[start : start + _ADD_CHUNK])
        for pid in fresh:
            self._pos[pid] = len(self._ids)
            self._ids.append(pid)
        return len(fresh)

    def search_positions(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS answer: scores and row positions (-1 where fewer than k exist)."""
        return self.index.search(_as_matrix(queries, self.dim), k)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-``k`` cosine scores (q, k) and, per query, the poster ids of the hits found
        (shorter than k when the index holds fewer than k posters; those scores are -inf)."""
        scores, pos = self.search_positions(queries, k)
        scores = np.where(pos >= 0, scores, -np.inf).astype(np.float32)
        return scores, [[self._ids[p] for p in row if p >= 0] for row in pos]

    def tune_nprobe(self, vectors: np.ndarray, target: float = 0.95, sample: int = 200, seed: int = 0) -> int:
        """Smallest power-of-two ``nprobe`` (from the spec's) whose recall@10 on ``sample``
        indexed rows reaches ``target``; kept in the spec so it is saved with the index.
        How many lists a query must visit depends on how the data clusters, so it is measured
        rather than guessed."""
        nprobe = max(1, self.spec.nprobe)
        while True:
            self._set_params(dataclasses.replace(self.spec, nprobe=nprobe))
            if nprobe >= self.spec.nlist or recall_at_k(self, vectors, sample, k=10, seed=seed) >= target:
                return nprobe
            nprobe = min(2 * nprobe, self.spec.nlist)

    def _set_params(self, spec: IndexSpec) -> None:
        self.spec = spec
        if spec.search_params:
            faiss.ParameterSpace().set_index_parameters(self.index, spec.search_params)

    def should_rebuild(self) -> bool:
        """True when incremental adds have outgrown the index: a different index type would now
        be chosen, or the IVF lists were trained on under a quarter of today's vectors."""
        if choose_index_spec(self.count, self.dim).kind != self.spec.kind:
            return True
        return self.spec.nlist > 0 and self.count > 4 * max(self.trained_count, 1)

    def save(self, folder: str | Path) -> Path:
        """Write the index and its id map into a fresh ``data-*`` sub-folder, then switch
        ``meta.json`` to it with one atomic rename, so a reader sees the old or the new
        index, never a mix; the previous generation is kept for readers mid-load.

        Whatever is in ``folder`` already never stops a save: an unreadable ``meta.json``
        (the very damage a rebuild repairs) only means there is no previous generation to keep,
        and a file where the folder or ``meta.json`` should be is replaced."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            folder.unlink()
        if (folder / _META).is_dir():
            shutil.rmtree(folder / _META)
        generation = f"data-{uuid.uuid4().hex[:12]}"
        files = {}
        with atomic_dir(folder / generation) as tmp:
            faiss.write_index(self.index, str(tmp / _INDEX_FILE))
            (tmp / _IDS_FILE).write_text("\n".join(self._ids), encoding="ascii")
            for name in (_INDEX_FILE, _IDS_FILE):
                _fsync(tmp / name)
                files[name] = {
                    "sha256": file_sha256(tmp / name, use_cache=False),
                    "bytes": (tmp / name).stat().st_size,
                }
        previous = _previous_generation(folder)
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "model_version": self.model_version,
            "spec": self.spec.to_dict(),
            "count": self.count,
            "dim": self.dim,
            "trained_count": self.trained_count,
            "data": generation,
            "files": files,
        }
        atomic_write_text(folder / _META, json.dumps(meta, indent=2), fsync=True)
        for old in folder.glob("data-*"):
            if old.name not in (generation, previous):
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink(missing_ok=True)
        return folder

    @classmethod
    def load(cls, folder: str | Path, verify: bool = True) -> PosterIndex:
        """Load a saved index. ``verify`` checks the files' sha256 (reads them twice)."""
        folder = Path(folder)
        if not (folder / _META).exists():
            raise IndexMissingError(f"no saved index in {folder} ({_META} missing)")
        meta = _read_meta(folder)
        try:
            data = folder / meta["data"]
            spec = IndexSpec.from_dict(meta["spec"])
            expected = {
                n: (int(meta["files"][n]["bytes"]), str(meta["files"][n]["sha256"]))
                for n in (_INDEX_FILE, _IDS_FILE)
            }
            count, dim = int(meta["count"]), int(meta["dim"])
        except (KeyError, TypeError, ValueError) as e:
            raise IndexCorruptError(f"{folder / _META} lacks a field: {e}") from e
        for name in (_INDEX_FILE, _IDS_FILE):
            path = data / name
            if not path.exists():
                raise IndexMissingError(f"{path} is missing")
            size, sha = expected[name]
            if path.stat().st_size != size or (verify and file_sha256(path, use_cache=False) != sha):
                raise IndexCorruptError(f"{path} does not match the checksum in {_META}")
        try:
            index = faiss.read_index(str(data / _INDEX_FILE))
        except RuntimeError as e:
            raise IndexCorruptError(f"FAISS cannot read {data / _INDEX_FILE}: {e}") from e
        text = (data / _IDS_FILE).read_text(encoding="ascii")
        ids = text.split("\n") if text else []
        if not (index.ntotal == len(ids) == count) or index.d != dim or spec.dim != dim:
            raise IndexCorruptError(
                f"{folder}: index has {index.ntotal} x {index.d}, id map {len(ids)}, meta {count} x {dim}"
            )
        return cls(
            index,
            ids,
            spec,
            kind=meta.get("kind", ""),
            model_version=meta.get("model_version", ""),
            trained_count=int(meta.get("trained_count", 0)),
        )


def _previous_generation(folder: Path) -> str | None:
    """The ``data-*`` folder the saved ``meta.json`` points at, if it can be read at all."""
    if not (folder / _META).is_file():
        return None
    try:
        data = _read_meta(folder).get("data")
    except IndexCorruptError:
        return None
    return data if isinstance(data, str) and data.startswith("data-") and "/" not in data else None


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexCorruptError(f"cannot read {folder / _META}: {e}") from e
    if not isinstance(meta, dict):
        raise IndexCorruptError(f"{folder / _META} is not a JSON object")
    return meta


def build_index(
    vectors: np.ndarray,
    ids: Sequence[str],
    spec: IndexSpec,
    kind: str = "",
    model_version: str = "",
    seed: int = 0,
    target_recall: float | None = 0.95,
) -> PosterIndex:
    """Create, train (on a random sample of ``spec.train_size`` vectors) and fill an index;
    for IVF indexes, raise ``nprobe`` until recall@10 reaches ``target_recall`` (None: keep
    the spec's)."""
    x = _as_matrix(vectors, spec.dim)
    index = faiss.index_factory(spec.dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
    trained = 0
    if not index.is_trained:
        if len(x) < spec.nlist:
            raise ValueError(f"{spec.factory} needs at least {spec.nlist} training vectors, got {len(x)}")
        take = min(len(x), spec.train_size or len(x))
        rows = np.sort(np.random.default_rng(seed).choice(len(x), take, replace=False))
        index.train(x[rows])
        trained = len(x)
    out = PosterIndex(index, [], spec, kind=kind, model_version=model_version, trained_count=trained)
    out.add(x, ids)
    if spec.nlist and target_recall:
        out.tune_nprobe(x, target_recall, seed=seed)
    return out


def recall_at_k(
    index: PosterIndex, vectors: np.ndarray, sample: np.ndarray | int = 1000, k: int = 10, seed: int = 0
) -> float:
    """Share of the exact top-``k`` (brute force over ``vectors``, the index's rows in order)
    that the index returns for the query vectors ``sample`` (held out), or for ``sample``
    random rows of ``vectors`` when an int."""
    x = _as_matrix(vectors, index.dim)
    if len(x) != index.count:
        raise ValueError(f"{len(x)} vectors for an index of {index.count}")
    if isinstance(sample, int):
        rows = np.random.default_rng(seed).choice(len(x), min(sample, len(x)), replace=False)
        queries = x[rows]
    else:
        queries = _as_matrix(sample, index.dim)
    k = min(k, len(x))
    _, exact = faiss.knn(queries, x, k, metric=faiss.METRIC_INNER_PRODUCT)
    _, found = index.search_positions(queries, k)
    hits = sum(len(set(e.tolist()) & set(f.tolist())) for e, f in zip(exact, found, strict=True))
    return hits / (k * len(queries))
