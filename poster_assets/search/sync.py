"""Keeping each kind's FAISS index in step with its vectors, measuring it, and the
``poster_neighbors`` table made from it (no Dagster here; ``faiss_index`` calls these)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poster_assets.embed.vectors import read_vectors
from poster_assets.search.index import (
    IndexLoadError,
    IndexMissingError,
    PosterIndex,
    build_index,
    choose_index_spec,
    recall_at_k,
)
from poster_assets.storage.store import Store

log = logging.getLogger(__name__)

NEIGHBORS_K = 10
RECALL_K = 10
RECALL_SAMPLE = 200
RECALL_TARGET = 0.95
# Held-out recall queries: an indexed vector moved off itself by noise of this share of its
# length (cosine ~0.9 to the original), so the query is not in the index.
_QUERY_NOISE = 0.5
_NEIGHBOR_CHUNK = 10_000


# A file in an index folder asking the next materialization to rebuild it even though it
# loads (``poster-assets rebuild-index --kind``); the rebuild's save removes it.
REBUILD_REQUEST = "rebuild-requested"


def index_dir(store: Store, kind: str) -> Path:
    return store.indexes_dir / kind


def request_rebuild(store: Store, kind: str) -> Path:
    """Make the next ``sync_index`` of ``kind`` rebuild its index from the stored vectors, even
    when the saved one loads and is current (readers keep using it until the new one is saved)."""
    marker = index_dir(store, kind) / REBUILD_REQUEST
    if marker.parent.exists() and not marker.parent.is_dir():
        marker.parent.unlink()  # a stray file where the folder belongs: the rebuild replaces it
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return marker


@dataclass
class IndexUpdate:
    kind: str
    version: str
    mode: str  # "build" | "add" | "unchanged" | "empty"
    reason: str
    added: int
    index: PosterIndex | None
    vectors: np.ndarray  # the index's rows, in its order (for recall and neighbours)

    @property
    def count(self) -> int:
        return self.index.count if self.index else 0


def sync_index(store: Store, kind: str, version: str) -> IndexUpdate:
    """Bring the saved index of ``kind`` up to the table's vectors at ``version``.

    An index saved at the same version gets only the new posters (no retraining). It is
    rebuilt from the table when it is missing or unreadable, was built at another version,
    holds posters the table no longer has at this version, has outgrown its index type, or a
    rebuild was requested (``request_rebuild``). With no vectors at ``version`` the saved index
    is left as it is.
    """
    folder = index_dir(store, kind)
    ids, vectors = read_vectors(store, kind, version)
    if not ids:
        return IndexUpdate(kind, version, "empty", f"no {kind} embeddings at {version}", 0, None, vectors)
    row_of = {pid: i for i, pid in enumerate(ids)}
    reason = ""
    index: PosterIndex | None = None
    requested = (folder / REBUILD_REQUEST).exists()
    if requested:
        reason = "a rebuild was requested (`poster-assets rebuild-index --kind`)"
    else:
        try:
            index = PosterIndex.load(folder)
        except IndexMissingError as exc:
            reason = str(exc)
        except IndexLoadError as exc:
            reason = f"saved index unreadable: {exc}"
    if index is not None:
        gone = [pid for pid in index.ids if pid not in row_of]
        if index.model_version != version:
            reason = f"model version changed from {index.model_version or '?'} to {version}"
        elif index.dim != vectors.shape[1]:
            reason = f"width changed from {index.dim} to {vectors.shape[1]}"
        elif gone:
            reason = f"{len(gone)} indexed poster(s) have no {kind} embedding at this version"
        else:
            fresh = [pid for pid in ids if pid not in index]
            added = index.add(vectors[[row_of[p] for p in fresh]], fresh) if fresh else 0
            if not index.should_rebuild():
                if added:
                    index.save(folder)
                aligned = vectors[[row_of[p] for p in index.ids]]
                return IndexUpdate(kind, version, "add" if added else "unchanged", "", added, index, aligned)
            reason = (
                f"{index.count} vectors outgrew a {index.spec.kind} index trained on {index.trained_count}"
            )
    log.info("rebuilding the %s index: %s", kind, reason)
    built = build_index(vectors, ids, choose_index_spec(len(ids), vectors.shape[1]), kind, version)
    built.save(folder)
    if requested:
        (folder / REBUILD_REQUEST).unlink(missing_ok=True)
    return IndexUpdate(kind, version, "build", reason, len(ids), built, vectors)


# Bump when what an index holds for the same vectors changes (the index spec, the neighbours).
_INDEX_METHOD = f"faiss-index-v1+k{NEIGHBORS_K}"


def vectors_version(store: Store, kinds: Mapping[str, str]) -> str:
    """What the indexes and ``poster_neighbors`` are made from, as one string: per current kind
    (``kinds``: kind -> version), the posters with a vector at that version and the vectors.
    ``faiss_index`` stamps its materializations with it as their data version, so the CLI can
    tell that no vector changed without opening an index."""
    wanted = [f"{k}={v}" for k, v in kinds.items()]
    rows = store.db.query(
        "SELECT kind, model_version, count(*), sum(hash(poster_id, embedding)) FROM foreground_embeddings "
        "WHERE list_contains(?, kind || '=' || model_version) GROUP BY ALL ORDER BY ALL",
        [wanted],
    )
    text = "|".join([_INDEX_METHOD, *sorted(wanted), *(",".join(map(str, r)) for r in rows)])
    return f"vectors:{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def neighbors_in_step(store: Store, updates: Sequence[IndexUpdate], k: int = NEIGHBORS_K) -> bool:
    """Whether ``poster_neighbors`` holds what ``write_neighbors`` would write for ``updates``
    whose indexes did not change: each index's posters with their top ``k``, and nothing else."""
    expected = {
        (u.kind, u.version): (u.count, u.count * min(k, u.count - 1))
        for u in updates
        if u.index is not None and u.count > 1
    }
    held = store.db.query(
        "SELECT kind, model_version, count(DISTINCT poster_id), count(*) FROM poster_neighbors GROUP BY ALL"
    )
    return {(kind, version): (posters, rows) for kind, version, posters, rows in held} == expected


def held_out_queries(vectors: np.ndarray, sample: int = RECALL_SAMPLE, seed: int = 0) -> np.ndarray:
    """Up to ``sample`` queries that are not in the index: indexed vectors moved off
    themselves by random noise and renormalised, like a new poster close to known ones."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), min(sample, len(vectors)), replace=False)
    noise = rng.standard_normal((len(rows), vectors.shape[1])).astype(np.float32)
    noise *= _QUERY_NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    queries = vectors[rows] + noise
    return (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def index_recall(index: PosterIndex, vectors: np.ndarray, k: int = RECALL_K, seed: int = 0) -> float:
    """recall@k of the index against exact search, on held-out queries."""
    return recall_at_k(index, vectors, held_out_queries(vectors, seed=seed), k=k)


def neighbor_columns(
    index: PosterIndex, vectors: np.ndarray, k: int = NEIGHBORS_K
) -> tuple[list[str], list[int], list[str], list[float]]:
    """Each indexed poster's top-``k`` other posters: (poster_id, rank, neighbor_id, score)
    columns. One search per poster: linear in the corpus, fine for a demo-sized corpus; past
    a few hundred thousand posters compute it per batch or on demand instead."""
    ids = index.ids
    out: tuple[list[str], list[int], list[str], list[float]] = ([], [], [], [])
    for start in range(0, len(ids), _NEIGHBOR_CHUNK):
        scores, hits = index.search(vectors[start : start + _NEIGHBOR_CHUNK], k + 1)
        for i, (row_scores, row_hits) in enumerate(zip(scores, hits, strict=False)):
            me = ids[start + i]
            # A poster is normally its own first hit; drop it wherever it lands.
            others = [(h, float(s)) for h, s in zip(row_hits, row_scores, strict=False) if h != me][:k]
            for rank, (hit, score) in enumerate(others, start=1):
                out[0].append(me)
                out[1].append(rank)
                out[2].append(hit)
                out[3].append(score)
    return out


def write_neighbors(store: Store, updates: Sequence[IndexUpdate], k: int = NEIGHBORS_K) -> int:
    """Replace ``poster_neighbors`` with the top-``k`` of every index, in one transaction
    (readers see the old table or the new one). Returns the rows written."""
    columns = [(u, neighbor_columns(u.index, u.vectors, k)) for u in updates if u.index is not None]
    written = 0
    with store.db.transaction() as conn:
        conn.execute("DELETE FROM poster_neighbors")
        for update, (pids, ranks, nids, scores) in columns:
            if not pids:
                continue
            # One statement over unnested lists: executemany would be a round trip per row.
            conn.execute(
                "INSERT INTO poster_neighbors (poster_id, kind, model_version, rank, neighbor_id, score) "
                "SELECT unnest(?::VARCHAR[]), ?, ?, unnest(?::INTEGER[]), unnest(?::VARCHAR[]), "
                "unnest(?::DOUBLE[])",
                [pids, update.kind, update.version, ranks, nids, scores],
            )
            written += len(pids)
    return written
