"""Retrieval quality of the stored embeddings on the ingested corpus, per kind.

- Genre precision@k: for each poster with genres (``raw_posters.genres``, first = primary), the
  share of its k nearest other posters that share its primary genre; with chance level.
- Near-duplicate recall@1: resized, JPEG-recompressed and slightly cropped copies of up to N
  posters, embedded through the same pipeline as a search query, must find their own poster at
  rank 1 among *all* stored posters of the kind.

Exact search throughout: this measures the embeddings, not the index (see ``faiss_index``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from poster_assets.embed.vectors import embed_new_images, read_vectors
from poster_assets.extract.runner import PosterRef, load_rgb
from poster_assets.extract.versions import current_versions
from poster_assets.models.hub import Models
from poster_assets.search.quality import VARIANTS, genre_chance_level, genre_precision_at_k
from poster_assets.storage.store import Store

BASELINE = "pixels"


class NoEmbeddingsError(RuntimeError):
    """The corpus has no vectors at the current version for a kind."""


@dataclass
class KindQuality:
    kind: str
    version: str
    posters: int
    genre_precision: float
    near_duplicate: dict[str, float] = field(default_factory=dict)  # variant (and "all") -> recall@1


@dataclass
class RetrievalQuality:
    k: int
    chance: float
    posters_with_genres: int
    duplicates_tested: int
    kinds: list[KindQuality]

    def table(self) -> tuple[list[str], list[tuple]]:
        """Rows for a printed table: one per kind, the baseline's difference alongside."""
        base = next((q for q in self.kinds if q.kind == BASELINE), None)
        variants = [*VARIANTS, "all"]
        columns = ["kind", "posters", f"genre P@{self.k}", f"vs {BASELINE}"] + [
            f"dup@1 {v}" for v in variants
        ]
        rows = []
        for q in self.kinds:
            delta = "" if base is None or q is base else f"{q.genre_precision - base.genre_precision:+.3f}"
            rows.append(
                (q.kind, q.posters, f"{q.genre_precision:.3f}", delta)
                + tuple(f"{q.near_duplicate[v]:.3f}" if v in q.near_duplicate else "" for v in variants)
            )
        return columns, rows


def _posters(store: Store, ids: Sequence[str]) -> dict[str, tuple[list[str], PosterRef]]:
    out: dict[str, tuple[list[str], PosterRef]] = {}
    for pid, genres, path, name in store.db.query(
        "SELECT poster_id, genres, original_path, file_name FROM raw_posters "
        "WHERE status = 'ok' AND poster_id IN ? ORDER BY ingested_at",
        [list(ids)],
    ):
        out.setdefault(pid, (list(genres or []), PosterRef(pid, path, name)))
    return out


def evaluate_retrieval(
    store: Store | None = None,
    models: Models | None = None,
    k: int = 10,
    duplicates: int = 30,
    kinds: Sequence[str] | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> RetrievalQuality:
    """Score every kind's stored vectors (at the current versions) on the ingested corpus."""
    store = store or Store.at()
    models = models or Models(store.models_dir)
    versions = current_versions(models).kinds
    kinds = kinds or list(versions)  # the three built-in kinds, and ssl once an encoder is trained
    say = progress or (lambda _: None)
    stored: dict[str, tuple[list[str], np.ndarray]] = {}
    for kind in kinds:
        ids, vectors = read_vectors(store, kind, versions[kind])
        if len(ids) < 2:
            raise NoEmbeddingsError(
                f"{len(ids)} poster(s) have a {kind} embedding at {versions[kind]}: ingest posters and run "
                "`poster-assets run` first"
            )
        stored[kind] = (ids, vectors)
    all_ids = sorted({pid for ids, _ in stored.values() for pid in ids})
    posters = _posters(store, all_ids)
    genres_of = {pid: g for pid, (g, _) in posters.items()}

    # Near-duplicate queries: the same altered copies for every kind.
    common = sorted(set.intersection(*(set(ids) for ids, _ in stored.values())) & set(posters))
    rng = np.random.default_rng(seed)
    chosen = (
        sorted(rng.choice(common, min(duplicates, len(common)), replace=False).tolist()) if common else []
    )
    altered: dict[str, list[np.ndarray]] = {name: [] for name in VARIANTS}
    for pid in chosen:
        rgb = load_rgb(store.blobs, posters[pid][1])
        for name, make in VARIANTS.items():
            altered[name].append(make(rgb))

    results = []
    for kind in kinds:
        ids, vectors = stored[kind]
        genres = [genres_of.get(pid, []) for pid in ids]
        precision = genre_precision_at_k(vectors, genres, k) if any(genres) else float("nan")
        near: dict[str, float] = {}
        if chosen:
            row_of = {pid: i for i, pid in enumerate(ids)}
            want = np.array([row_of[pid] for pid in chosen])
            # Altered copies go through the query pipeline: ssl embeds the foreground crop too.
            hits_all = 0
            for name, images in altered.items():
                say(f"{kind}: embedding {len(images)} {name} copies")
                queries = embed_new_images(kind, images, models)
                top1 = np.argmax(queries @ vectors.T, axis=1)
                hits = int((top1 == want).sum())
                near[name] = hits / len(chosen)
                hits_all += hits
            near["all"] = hits_all / (len(chosen) * len(altered))
        results.append(KindQuality(kind, versions[kind], len(ids), precision, near))
    with_genres = [genres_of[pid] for pid in all_ids if genres_of.get(pid)]
    return RetrievalQuality(
        k=k,
        chance=genre_chance_level(with_genres) if with_genres else float("nan"),
        posters_with_genres=len(with_genres),
        duplicates_tested=len(chosen),
        kinds=results,
    )
