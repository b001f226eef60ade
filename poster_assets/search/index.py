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
- ``ivf_sq8_disk_rerank``: when the float vectors would not fit the memory budget (1M x 1280:
  4.8 GiB), the same PCA-256 IVF-SQ8 candidates (264 B a vector in RAM) are re-ranked on a
  float16 copy of the full vectors in ``vectors.f16``, memory-mapped: the page cache holds
  what queries touch, and the kernel may drop it under pressure, unlike the process's own
  memory. In-RAM codes of the full vectors were tried first: 8-bit scalar codes (the former
  ``ivf_pq_refine``, still loadable) take 1280 B a vector; a PQ of 4 dims a byte (320 B)
  capped recall@10 at 0.87 on clustered 1280-d vectors, whatever ``nprobe`` and ``k_factor``.

Large corpora are built from a ``VectorSource`` (``RawVectorFile``: float32 rows on disk;
``ScratchVectors``: a temporary file filled from the database) without holding every vector in
RAM: training reads a sample, adding reads chunks.

Past ``SHARD_MAX`` (500k) vectors a kind is split by poster-id range into shards
(``shard_of``), each a self-contained ``PosterIndex`` folder built on its own; ``shards.json``,
written last, names each shard's generation, and ``ShardedIndex`` searches them all and merges
by score (exact cosines, so the merge is exact). 1M x 1280 in 2 shards: loaded 0.47 GiB,
recall@10 0.997, 132x exact, build peak 1.9-2.0 GiB per shard process.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from poster_assets.storage.files import atomic_dir, atomic_write_text, file_sha256

FLAT_MAX = 50_000
PCA_DIM = 256
# Bytes of float vectors kept in RAM for exact re-ranking; above it (about 200k vectors at
# 1280-d) they are re-ranked from a memory-mapped float16 file instead (``ivf_sq8_disk_rerank``).
DEFAULT_MEMORY_BUDGET = 1 << 30
FORMAT_VERSION = 1
_META = "meta.json"
_INDEX_FILE = "index.faiss"
_IDS_FILE = "ids.txt"
_VECTORS_FILE = "vectors.f16"
_RERANK_BLOCK = 64  # queries re-ranked at once: bounds the gathered (block, k_factor * k, dim) floats
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

    kind: str  # "flat" | "ivf_sq8_refine" | "ivf_sq8_disk_rerank" ("ivf_pq_refine": older saves)
    dim: int
    factory: str
    nlist: int = 0
    nprobe: int = 0
    k_factor: float = 0.0
    train_size: int = 0

    @property
    def reranks_from_disk(self) -> bool:
        """Re-ranked by ``PosterIndex`` on memory-mapped float16 vectors, not inside FAISS."""
        return self.kind == "ivf_sq8_disk_rerank"

    @property
    def search_params(self) -> str:
        params = []
        if self.nprobe:
            params.append(f"nprobe={self.nprobe}")
        if self.k_factor and not self.reranks_from_disk:
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
    if n * dim * 4 <= memory_budget:
        factory = f"{reduce}IVF{nlist},SQ8,RFlat"
        return IndexSpec("ivf_sq8_refine", dim, factory, nlist, nprobe=16, k_factor=8, train_size=train_size)
    factory = f"{reduce}IVF{nlist},SQ8"
    return IndexSpec("ivf_sq8_disk_rerank", dim, factory, nlist, nprobe=16, k_factor=8, train_size=train_size)


class _Float16Rows:
    """The full vectors as float16 for re-ranking, row ``i`` for FAISS position ``i``.

    Rows live in a file that is memory-mapped for reading: a saved ``vectors.f16`` (rows added
    after loading stay in RAM until the next save), or, while an index is built, an anonymous
    temporary file that adds append to with ``write`` (so that building 1M rows does not hold
    them in RAM either)."""

    def __init__(self, dim: int, path: Path | None = None, count: int = 0) -> None:
        self.dim = dim
        self._file = None if path else tempfile.TemporaryFile()  # noqa: SIM115 (lives with the index)
        self._mapped = self._map(path, count) if path else np.zeros((0, dim), np.float16)
        self._written = 0  # rows in the temporary file
        self._added: list[np.ndarray] = []

    def __len__(self) -> int:
        base = self._written if self._file is not None else len(self._mapped)
        return base + sum(len(a) for a in self._added)

    def _map(self, source: Any, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros((0, self.dim), np.float16)
        return np.memmap(source, dtype=np.float16, mode="r", shape=(count, self.dim))

    def append(self, x: np.ndarray) -> None:
        rows = np.ascontiguousarray(x, dtype=np.float16)
        if self._file is not None:
            self._file.seek(self._written * self.dim * 2)
            self._file.write(rows.tobytes())
            self._written += len(rows)
        else:
            self._added.append(rows)

    def _base(self) -> np.ndarray:
        if self._file is not None and len(self._mapped) != self._written:
            self._file.flush()
            self._mapped = self._map(self._file, self._written)
        return self._mapped

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """float32 rows at ``positions`` (any order)."""
        base = self._base()
        out = np.empty((len(positions), self.dim), np.float32)
        mapped = positions < len(base)
        order = np.argsort(positions[mapped])  # page-cache reads in file order
        picked = np.nonzero(mapped)[0][order]
        out[picked] = base[positions[picked]]
        if not mapped.all():
            added = np.concatenate(self._added)
            out[~mapped] = added[positions[~mapped] - len(base)]
        return out

    def write(self, path: Path) -> None:
        base = self._base()
        with open(path, "wb") as f:
            for start in range(0, len(base), _ADD_CHUNK):
                f.write(np.ascontiguousarray(base[start : start + _ADD_CHUNK]).tobytes())
            for rows in self._added:
                f.write(rows.tobytes())


class VectorSource(Protocol):
    """Rows of float32 vectors that need not all fit in RAM at once."""

    shape: tuple[int, int]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a float32 (stop - start, dim) array."""
        ...


class RawVectorFile:
    """A file of float32 rows (``ndarray.tofile``), read a chunk at a time.

    Reads go through ``np.fromfile`` rather than ``np.memmap``: the page cache then holds the
    file, and the process RSS counts only the chunk being read, not every page ever touched."""

    def __init__(self, path: str | Path, dim: int) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        if size % (4 * dim):
            raise ValueError(f"{self.path} holds {size} bytes, not a whole number of {dim}-d float32 rows")
        self.shape = (size // (4 * dim), dim)

    def rows(self, start: int, stop: int) -> np.ndarray:
        dim = self.shape[1]
        count = max(0, min(stop, self.shape[0]) - start)
        x = np.fromfile(self.path, dtype=np.float32, count=count * dim, offset=start * dim * 4)
        return x.reshape(count, dim)


class ScratchVectors:
    """float32 rows in an unnamed temporary file (gone when closed, collected or the process
    ends), filled once (e.g. from the database, in any order) and then read a chunk at a time:
    a ``VectorSource`` for corpora larger than RAM. Reads use ``preadv`` into a fresh array,
    so only the chunk being read is the process's memory, as with ``RawVectorFile``."""

    def __init__(self, n: int, dim: int, folder: str | Path | None = None) -> None:
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
        self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 (lives with the source)
        self._file.truncate(n * dim * 4)
        self.shape = (n, dim)

    def write(self, positions: np.ndarray, rows: np.ndarray) -> None:
        """Put ``rows[j]`` at row ``positions[j]``; runs of consecutive positions are one write."""
        x = _as_matrix(rows, self.shape[1])
        positions = np.asarray(positions, np.int64)
        if len(positions) != len(x):
            raise ValueError(f"{len(x)} rows for {len(positions)} positions")
        if len(x) and (positions.min() < 0 or positions.max() >= self.shape[0]):
            raise IndexError(f"row positions outside 0..{self.shape[0] - 1}")
        breaks = np.nonzero(np.diff(positions) != 1)[0] + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(x)], strict=True):
            self._pwrite(memoryview(x[lo:hi]).cast("B"), int(positions[lo]) * self.shape[1] * 4)

    def _pwrite(self, data: memoryview, offset: int) -> None:
        while len(data):
            done = os.pwrite(self._file.fileno(), data, offset)
            data, offset = data[done:], offset + done

    def rows(self, start: int, stop: int) -> np.ndarray:
        dim = self.shape[1]
        start, stop = max(0, start), min(stop, self.shape[0])
        out = np.empty((max(0, stop - start), dim), np.float32)
        view, offset = memoryview(out).cast("B"), start * dim * 4
        while len(view):
            done = os.preadv(self._file.fileno(), [view], offset)
            if done == 0:
                raise EOFError(f"scratch vector file ended at byte {offset}")
            view, offset = view[done:], offset + done
        return out

    def close(self) -> None:
        self._file.close()


def _chunks(source: np.ndarray | VectorSource, size: int = _ADD_CHUNK) -> Iterator[np.ndarray]:
    n = source.shape[0]
    for start in range(0, n, size):
        stop = start + size
        chunk = source[start:stop] if isinstance(source, np.ndarray) else source.rows(start, stop)
        yield _as_matrix(chunk, source.shape[1])


def _take(source: np.ndarray | VectorSource, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (sorted) of ``source``, read one chunk at a time."""
    if isinstance(source, np.ndarray):
        return _as_matrix(source[rows], source.shape[1])
    out, start = [], 0
    for chunk in _chunks(source):
        inside = rows[(rows >= start) & (rows < start + len(chunk))]
        out.append(chunk[inside - start])
        start += len(chunk)
    return np.concatenate(out) if out else np.zeros((0, source.shape[1]), np.float32)


def _exact_knn(source: np.ndarray | VectorSource, queries: np.ndarray, k: int) -> np.ndarray:
    """Positions of the exact top-``k`` inner products, brute force one chunk at a time so
    that the ground truth of a corpus larger than RAM needs only one chunk in memory."""
    best_d = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    start = 0
    for chunk in _chunks(source):
        d, i = faiss.knn(queries, chunk, min(k, len(chunk)), metric=faiss.METRIC_INNER_PRODUCT)
        d, i = np.hstack([best_d, d]), np.hstack([best_i, i + start])
        top = np.argsort(-d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(d, top, 1), np.take_along_axis(i, top, 1)
        start += len(chunk)
    return best_i


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
        rows: _Float16Rows | None = None,
    ) -> None:
        if index.ntotal != len(ids):
            raise ValueError(f"index holds {index.ntotal} vectors but {len(ids)} ids were given")
        if spec.reranks_from_disk:
            rows = rows if rows is not None else _Float16Rows(spec.dim)
            if len(rows) != index.ntotal:
                raise ValueError(f"index holds {index.ntotal} vectors but {len(rows)} re-ranking rows")
        self._rows = rows if spec.reranks_from_disk else None
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
            if self._rows is not None:
                self._rows.append(x[start : start + _ADD_CHUNK])
        for pid in fresh:
            self._pos[pid] = len(self._ids)
            self._ids.append(pid)
        return len(fresh)

    def search_positions(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row positions (-1 where fewer than k exist): FAISS's answer, or for
        ``ivf_sq8_disk_rerank`` its ``k_factor * k`` candidates re-ranked by inner product with
        their float16 vectors (scores within ~1e-3 of the float32 cosine)."""
        q = _as_matrix(queries, self.dim)
        if self._rows is None:
            return self.index.search(q, k)
        _, cand = self.index.search(q, max(k, math.ceil(k * self.spec.k_factor)))
        scores = np.full(cand.shape, -np.inf, np.float32)
        for start in range(0, len(q), _RERANK_BLOCK):
            block = cand[start : start + _RERANK_BLOCK]
            query_of, slot = np.nonzero(block >= 0)
            vectors = self._rows.gather(block[query_of, slot])
            scores[start + query_of, slot] = np.einsum("md,md->m", vectors, q[start + query_of])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores, pos = np.take_along_axis(scores, top, 1), np.take_along_axis(cand, top, 1)
        pos[~np.isfinite(scores)] = -1
        if pos.shape[1] < k:  # fewer candidates than k: pad as FAISS does
            pad = k - pos.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            pos = np.pad(pos, ((0, 0), (0, pad)), constant_values=-1)
        return scores, pos

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-``k`` cosine scores (q, k) and, per query, the poster ids of the hits found
        (shorter than k when the index holds fewer than k posters; those scores are -inf)."""
        scores, pos = self.search_positions(queries, k)
        scores = np.where(pos >= 0, scores, -np.inf).astype(np.float32)
        return scores, [[self._ids[p] for p in row if p >= 0] for row in pos]

    def tune_nprobe(
        self, vectors: np.ndarray | VectorSource, target: float = 0.95, sample: int = 200, seed: int = 0
    ) -> int:
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

    def should_rebuild(self, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> bool:
        """True when incremental adds have outgrown the index: a different index type would now
        be chosen (within ``memory_budget``), or the IVF lists were trained on under a quarter
        of today's vectors."""
        if choose_index_spec(self.count, self.dim, memory_budget).kind != self.spec.kind:
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
            if self._rows is not None:
                self._rows.write(tmp / _VECTORS_FILE)
            for name in _file_names(self.spec):
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
        """Load a saved index (a ``ShardedIndex`` where ``folder`` holds a shard manifest).
        ``verify`` checks the files' sha256 (reads them twice)."""
        folder = Path(folder)
        if cls is PosterIndex and (folder / MANIFEST).exists():
            return ShardedIndex.load(folder, verify)
        if not (folder / _META).exists():
            raise IndexMissingError(f"no saved index in {folder} ({_META} missing)")
        return cls._from_meta(folder, _read_meta(folder), verify)

    @classmethod
    def _from_meta(cls, folder: Path, meta: dict[str, Any], verify: bool) -> PosterIndex:
        """The index whose generation ``meta`` (a ``meta.json``'s content) names in ``folder``."""
        try:
            data = folder / meta["data"]
            spec = IndexSpec.from_dict(meta["spec"])
            expected = {
                n: (int(meta["files"][n]["bytes"]), str(meta["files"][n]["sha256"]))
                for n in _file_names(spec)
            }
            count, dim = int(meta["count"]), int(meta["dim"])
        except (KeyError, TypeError, ValueError) as e:
            raise IndexCorruptError(f"{folder / _META} lacks a field: {e}") from e
        for name in expected:
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
        rows = None
        if spec.reranks_from_disk:
            if (data / _VECTORS_FILE).stat().st_size != count * dim * 2:
                raise IndexCorruptError(f"{data / _VECTORS_FILE} does not hold {count} x {dim} float16 rows")
            rows = _Float16Rows(dim, data / _VECTORS_FILE, count)
        return cls(
            index,
            ids,
            spec,
            kind=meta.get("kind", ""),
            model_version=meta.get("model_version", ""),
            trained_count=int(meta.get("trained_count", 0)),
            rows=rows,
        )


def _file_names(spec: IndexSpec) -> tuple[str, ...]:
    return (_INDEX_FILE, _IDS_FILE, _VECTORS_FILE) if spec.reranks_from_disk else (_INDEX_FILE, _IDS_FILE)


def _previous_generation(folder: Path) -> str | None:
    """The ``data-*`` folder the saved ``meta.json`` points at, if it can be read at all."""
    if not (folder / _META).is_file():
        return None
    try:
        data = _read_meta(folder).get("data")
    except IndexCorruptError:
        return None
    return data if isinstance(data, str) and data.startswith("data-") and "/" not in data else None


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexCorruptError(f"cannot read {path}: {e}") from e
    if not isinstance(value, dict):
        raise IndexCorruptError(f"{path} is not a JSON object")
    return value


def _read_meta(folder: Path) -> dict[str, Any]:
    return _read_json_object(folder / _META)


def build_index(
    vectors: np.ndarray | VectorSource,
    ids: Sequence[str],
    spec: IndexSpec,
    kind: str = "",
    model_version: str = "",
    seed: int = 0,
    target_recall: float | None = 0.95,
) -> PosterIndex:
    """Create, train (on a random sample of ``spec.train_size`` vectors) and fill an index;
    for IVF indexes, raise ``nprobe`` until recall@10 reaches ``target_recall`` (None: keep
    the spec's).

    ``vectors`` may be a ``VectorSource`` (e.g. ``RawVectorFile``): then only the training
    sample and one chunk of ``_ADD_CHUNK`` rows are in RAM at a time (1M x 1280: peak about
    2 GiB instead of 4.8 GiB of vectors plus the index)."""
    if isinstance(vectors, np.ndarray) or not hasattr(vectors, "rows"):
        vectors = _as_matrix(vectors, spec.dim)
    n, dim = vectors.shape
    if dim != spec.dim:
        raise ValueError(f"expected vectors of shape (n, {spec.dim}), got {vectors.shape}")
    if len(ids) != n:
        raise ValueError(f"{n} vectors but {len(ids)} ids")
    index = faiss.index_factory(spec.dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
    trained = 0
    if not index.is_trained:
        if n < spec.nlist:
            raise ValueError(f"{spec.factory} needs at least {spec.nlist} training vectors, got {n}")
        take = min(n, spec.train_size or n)
        rows = np.sort(np.random.default_rng(seed).choice(n, take, replace=False))
        index.train(_take(vectors, rows))
        trained = n
    out = PosterIndex(index, [], spec, kind=kind, model_version=model_version, trained_count=trained)
    start = 0
    for chunk in _chunks(vectors):
        out.add(chunk, ids[start : start + len(chunk)])
        start += len(chunk)
    if spec.nlist and target_recall:
        out.tune_nprobe(vectors, target_recall, seed=seed)
    return out


def recall_at_k(
    index: PosterIndex,
    vectors: np.ndarray | VectorSource,
    sample: np.ndarray | int = 1000,
    k: int = 10,
    seed: int = 0,
) -> float:
    """Share of the exact top-``k`` (brute force over ``vectors``, the index's rows in order)
    that the index returns for the query vectors ``sample`` (held out), or for ``sample``
    random rows of ``vectors`` when an int."""
    x = vectors if hasattr(vectors, "rows") else _as_matrix(vectors, index.dim)
    n = x.shape[0]
    if n != index.count or x.shape[1] != index.dim:
        raise ValueError(f"{x.shape} vectors for an index of {index.count} x {index.dim}")
    if isinstance(sample, int):
        rows = np.sort(np.random.default_rng(seed).choice(n, min(sample, n), replace=False))
        queries = _take(x, rows)
    else:
        queries = _as_matrix(sample, index.dim)
    k = min(k, n)
    exact = _exact_knn(x, queries, k)
    _, found = index.search_positions(queries, k)
    hits = sum(len(set(e.tolist()) & set(f.tolist())) for e, f in zip(exact, found, strict=True))
    return hits / (k * len(queries))


def gather_rows(source: np.ndarray | VectorSource, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (any order, no repeats needed) of ``source`` as float32: a few hundred
    (recall queries) are read one by one; more go through one chunked pass (``_take``)."""
    rows = np.asarray(rows, np.int64)
    if isinstance(source, np.ndarray):
        return _as_matrix(source[rows], source.shape[1])
    if len(rows) <= 1000:
        parts = [source.rows(int(r), int(r) + 1) for r in rows]
        return np.concatenate(parts) if parts else np.zeros((0, source.shape[1]), np.float32)
    unique, back = np.unique(rows, return_inverse=True)
    return _take(source, unique)[back]


# Sharding by poster-id range.

# Vectors a shard holds at most (``choose_shards``). One index past this is slow to build on few
# cores and its build peak grows with it (1M x 1280: 3.65 GiB); 500k shards build in about half
# that, so two build side by side within 4 GiB. Every home below 500k posters (the demo has
# 200) keeps exactly one shard, saved in the unsharded layout that older indexes already use.
SHARD_MAX = 500_000
MANIFEST = "shards.json"
_ID_BITS = 32  # leading bits (8 hex digits) of a poster id that place it in a shard


def choose_shards(n: int) -> int:
    """How many shards ``n`` vectors of a kind are split into."""
    return max(1, math.ceil(n / SHARD_MAX))


def shard_of(poster_id: str, shards: int) -> int:
    """The shard (0..shards-1) of a poster: the leading 32 bits of its id (sha256 hex, so
    uniform: shards come out equal) cut into ``shards`` equal ranges. A poster stays in its
    shard as the corpus grows, and shard order is id order."""
    if shards == 1:
        return 0
    return (int(poster_id[:8], 16) * shards) >> _ID_BITS


def shard_folder(folder: str | Path, shard: int, shards: int) -> Path:
    """Where shard ``shard`` of ``shards`` is saved: a self-contained ``PosterIndex`` folder."""
    return Path(folder) / f"shard-{shard}-of-{shards}"


class ShardedIndex(PosterIndex):
    """One kind's index split by poster-id range (``shard_of``) into self-contained
    ``PosterIndex`` shards, each built and saved on its own, searched together.

    Position ``i`` is row ``i`` of the shards' rows laid end to end (``ids``). Every shard's
    scores are exact cosines (flat, or exact re-ranking of its candidates), so the merged top
    ``k`` of the shards' top ``k`` is exactly the top ``k`` of what they found together.
    Saved as the shard folders plus ``shards.json``, written last, that names the generation
    of every shard: a reader loads a consistent set even while shards are being re-saved."""

    # PosterIndex.__init__ is not called: a sharded index has no FAISS index or id map of its own.
    def __init__(self, shards: Sequence[PosterIndex]) -> None:
        if not shards:
            raise ValueError("a sharded index needs at least one shard")
        first = shards[0]
        for shard in shards:
            if (shard.dim, shard.model_version, shard.kind) != (first.dim, first.model_version, first.kind):
                raise ValueError("shards of one index must share kind, model version and width")
        self.shards = list(shards)
        self.kind = first.kind
        self.model_version = first.model_version
        self.trained_count = sum(s.trained_count for s in shards)
        self.spec = max((s.spec for s in shards), key=lambda spec: spec.nlist)  # for reports
        # Per shard: the folder it was loaded from or saved to, and its count then.
        self._saved: list[tuple[Path | None, int]] = [(None, 0)] * len(self.shards)

    @property
    def ids(self) -> list[str]:
        return [pid for shard in self.shards for pid in shard._ids]

    @property
    def count(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def dim(self) -> int:
        return self.shards[0].dim

    def __contains__(self, poster_id: str) -> bool:
        return any(poster_id in shard for shard in self.shards)

    def _offsets(self) -> np.ndarray:
        return np.cumsum([0, *(s.count for s in self.shards)])

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> int:
        """Append each vector to the shard its poster id falls in (see ``PosterIndex.add``)."""
        x = _as_matrix(vectors, self.dim)
        if len(ids) != len(x):
            raise ValueError(f"{len(x)} vectors but {len(ids)} ids")
        where = np.array([shard_of(pid, len(self.shards)) for pid in ids], np.int64)
        added = 0
        for s, shard in enumerate(self.shards):
            rows = np.nonzero(where == s)[0]
            if len(rows):
                added += shard.add(x[rows], [ids[r] for r in rows])
        return added

    def search_positions(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Every shard's top ``k``, merged by score; positions as in ``ids`` (-1: none)."""
        q = _as_matrix(queries, self.dim)
        scores, positions = [], []
        for offset, shard in zip(self._offsets(), self.shards, strict=False):
            s, p = shard.search_positions(q, k)
            scores.append(np.where(p >= 0, s, -np.inf).astype(np.float32))
            positions.append(np.where(p >= 0, p + offset, -1))
        merged_s, merged_p = np.hstack(scores), np.hstack(positions)
        top = np.argsort(-merged_s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(merged_s, top, 1), np.take_along_axis(merged_p, top, 1)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        scores, pos = self.search_positions(queries, k)
        offsets = self._offsets()

        def poster(p: int) -> str:
            s = int(np.searchsorted(offsets, p, side="right")) - 1
            return self.shards[s]._ids[p - offsets[s]]

        return scores, [[poster(int(p)) for p in row if p >= 0] for row in pos]

    def tune_nprobe(self, vectors: np.ndarray | VectorSource, **_: Any) -> int:  # type: ignore[override]
        raise NotImplementedError("nprobe is tuned per shard, on the shard's own vectors, as it is built")

    def should_rebuild(self, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> bool:
        """Whether a shard has outgrown its type (each was chosen within an equal part of the
        budget) or its training."""
        return any(shard.should_rebuild(memory_budget // len(self.shards)) for shard in self.shards)

    def save(self, folder: str | Path) -> Path:
        """Save the shards that changed since this index was loaded from or saved to ``folder``
        (each atomically, as a ``PosterIndex``), then the manifest naming every shard's generation."""
        folder = Path(folder).resolve()
        n = len(self.shards)
        for s, shard in enumerate(self.shards):
            path = shard_folder(folder, s, n)
            if (folder, shard.count) != self._saved[s] or not (path / _META).exists():
                shard.save(path)
        write_manifest(folder, n)
        self._saved = [(folder, shard.count) for shard in self.shards]
        return folder

    @classmethod
    def load(cls, folder: str | Path, verify: bool = True) -> ShardedIndex:
        folder = Path(folder)
        if not (folder / MANIFEST).exists():
            raise IndexMissingError(f"no sharded index in {folder} ({MANIFEST} missing)")
        manifest = _read_manifest(folder)
        try:
            parts = [(folder / p["folder"], p["meta"]) for p in manifest["parts"]]
            if len(parts) != int(manifest["shards"]) or not parts:
                raise ValueError(f"{len(parts)} shards listed, {manifest['shards']} expected")
        except (KeyError, TypeError, ValueError) as e:
            raise IndexCorruptError(f"{folder / MANIFEST} is inconsistent: {e}") from e
        for path, _ in parts:
            if path.parent != folder or not path.name.startswith("shard-"):
                raise IndexCorruptError(f"{folder / MANIFEST} names {path}, not a shard of {folder}")
        try:
            index = cls([PosterIndex._from_meta(path, meta, verify) for path, meta in parts])
        except ValueError as e:
            raise IndexCorruptError(f"{folder}: {e}") from e
        index._saved = [(folder.resolve(), shard.count) for shard in index.shards]
        return index


def _read_manifest(folder: Path) -> dict[str, Any]:
    return _read_json_object(folder / MANIFEST)


def write_manifest(folder: str | Path, shards: int) -> dict[str, Any]:
    """Point readers at the saved shards ``0..shards-1`` of ``folder`` (each saved by
    ``PosterIndex.save``, possibly by other processes): one atomic write of ``shards.json``
    naming each shard's current generation, after checking that they belong together.

    What an older layout left in ``folder`` goes once no reader can still be on its way to it:
    the unsharded ``meta.json`` now (so nothing loads it instead of the shards), the data it
    names and the shard folders of the previous manifest at the next manifest."""
    folder = Path(folder)
    parts = []
    for s in range(shards):
        path = shard_folder(folder, s, shards)
        if not (path / _META).exists():
            raise IndexMissingError(f"shard {s} of {shards} is not saved in {path}")
        parts.append({"folder": path.name, "meta": _read_meta(path)})
    first = parts[0]["meta"]
    for part in parts:
        meta = part["meta"]
        if (meta.get("model_version"), meta.get("dim"), meta.get("kind")) != (
            first.get("model_version"),
            first.get("dim"),
            first.get("kind"),
        ):
            raise ValueError(f"{part['folder']} does not match shard 0 (model version, width or kind)")
    previous = _read_manifest(folder) if (folder / MANIFEST).is_file() else {}
    keep = {p["folder"] for p in parts} | {p.get("folder") for p in previous.get("parts", [])}
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": first.get("kind", ""),
        "model_version": first.get("model_version", ""),
        "dim": first.get("dim"),
        "count": sum(int(p["meta"]["count"]) for p in parts),
        "shards": shards,
        "parts": parts,
    }
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2), fsync=True)
    unsharded = _previous_generation(folder)
    (folder / _META).unlink(missing_ok=True)
    for old in [*folder.glob("data-*"), *folder.glob("shard-*")]:
        if old.name != unsharded and old.name not in keep and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    return manifest


def drop_shards(folder: str | Path) -> None:
    """After an unsharded save into ``folder``: remove the manifest (readers then load the
    unsharded index) and the shards it named."""
    folder = Path(folder)
    (folder / MANIFEST).unlink(missing_ok=True)
    for old in folder.glob("shard-*"):
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)


def build_sharded_index(
    vectors: np.ndarray | VectorSource,
    ids: Sequence[str],
    shards: int,
    kind: str = "",
    model_version: str = "",
    spec: IndexSpec | None = None,
    seed: int = 0,
    target_recall: float | None = 0.95,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> ShardedIndex:
    """All shards in this process (the product builds them apart: ``sync.build_shard``): each
    from its own rows of ``vectors``, with ``spec`` or the type ``choose_index_spec`` picks for
    its size within an equal part of ``memory_budget``."""
    where = np.array([shard_of(pid, shards) for pid in ids], np.int64)
    built = []
    for s in range(shards):
        rows = np.nonzero(where == s)[0]
        if not len(rows):
            raise ValueError(f"shard {s} of {shards} would be empty: too many shards for {len(ids)} posters")
        part = gather_rows(vectors, rows)
        shard_spec = spec or choose_index_spec(len(rows), part.shape[1], memory_budget // shards)
        built.append(
            build_index(part, [ids[r] for r in rows], shard_spec, kind, model_version, seed, target_recall)
        )
    return ShardedIndex(built)
