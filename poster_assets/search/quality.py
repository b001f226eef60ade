"""How good an embedding is for retrieval: genre precision and near-duplicate recall.

Both use exact search, so they measure the embedding, not the index's approximation
(``index.recall_at_k`` measures that).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import cv2
import faiss
import numpy as np

EmbedFn = Callable[[list[np.ndarray]], np.ndarray]


def primary_genre(genres: Collection[str]) -> str | None:
    """The first genre of an ordered list; for an unordered set, the alphabetically first
    (so the choice is at least deterministic)."""
    if not genres:
        return None
    if isinstance(genres, (set, frozenset)):
        return min(genres)
    return next(iter(genres))


def _unit(vectors: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _leave_one_out_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """(n, k) row indices of each row's k nearest other rows by cosine similarity."""
    x = _unit(vectors)
    _, nn = faiss.knn(x, x, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    out = np.empty((len(x), k), np.int64)
    for i, row in enumerate(nn):
        others = row[row != i]  # self is normally first, but exact duplicates can tie with it
        out[i] = others[:k]
    return out


def genre_precision_at_k(vectors: np.ndarray, genres: Sequence[Collection[str]], k: int = 10) -> float:
    """Mean over posters of the share of their k nearest other posters whose genres include
    the query's primary genre. Posters without genres are not used as queries."""
    if len(vectors) != len(genres):
        raise ValueError(f"{len(vectors)} vectors but {len(genres)} genre sets")
    k = min(k, len(vectors) - 1)
    if k < 1:
        raise ValueError("need at least two posters")
    neighbours = _leave_one_out_neighbours(vectors, k)
    sets = [set(g) for g in genres]
    scores = []
    for i, g in enumerate(genres):
        primary = primary_genre(g)
        if primary is not None:
            scores.append(np.mean([primary in sets[j] for j in neighbours[i]]))
    if not scores:
        raise ValueError("no poster has a genre")
    return float(np.mean(scores))


def genre_chance_level(genres: Sequence[Collection[str]]) -> float:
    """genre_precision_at_k of random neighbours: what an embedding must beat."""
    sets = [set(g) for g in genres]
    n = len(sets)
    scores = []
    for g in genres:
        primary = primary_genre(g)
        if primary is not None:
            scores.append((sum(primary in s for s in sets) - 1) / max(n - 1, 1))
    return float(np.mean(scores)) if scores else 0.0


def resized_variant(rgb: np.ndarray, scale: float = 0.5) -> np.ndarray:
    """The image downscaled (as a thumbnail or a re-upload would be)."""
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def jpeg_variant(rgb: np.ndarray, quality: int = 40) -> np.ndarray:
    """The image re-encoded as a low-quality JPEG."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def cropped_variant(rgb: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """The image with ``fraction`` of its width and height trimmed from each side."""
    h, w = rgb.shape[:2]
    dy, dx = int(h * fraction), int(w * fraction)
    return np.ascontiguousarray(rgb[dy : h - dy, dx : w - dx])


VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "resized": resized_variant,
    "jpeg": jpeg_variant,
    "cropped": cropped_variant,
}


def near_duplicate_recall(
    embed: EmbedFn,
    images: Sequence[np.ndarray],
    variants: Sequence[str] = tuple(VARIANTS),
) -> dict[str, float]:
    """For each variant kind, the share of altered copies whose rank-1 neighbour among the
    originals is their own original (the originals are each other's distractors); ``"all"``
    pools every variant."""
    originals = _unit(embed(list(images)))
    index = faiss.IndexFlatIP(originals.shape[1])
    index.add(originals)
    results: dict[str, float] = {}
    hits_all = 0
    for name in variants:
        queries = _unit(embed([VARIANTS[name](im) for im in images]))
        _, top = index.search(queries, 1)
        hits = int((top[:, 0] == np.arange(len(images))).sum())
        results[name] = hits / len(images)
        hits_all += hits
    results["all"] = hits_all / (len(images) * len(variants)) if variants else 0.0
    return results
