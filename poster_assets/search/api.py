"""Similarity search over the saved FAISS indexes, for people and for code.

    from poster_assets.search.api import search
    search(query_poster_id="3fa2…")                  # posters like an ingested one
    search(image_path=Path("new.jpg"), kind="poster")  # posters like any image file

An outside image goes through exactly the pipeline the stored posters went through (decode,
foreground mask from the same segmenter, crop, EfficientNet-Lite0 or, for the ``ssl`` kind, the
current trained encoder), and its version is checked against the index's, so a query is never
compared with vectors of another model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poster_assets.embed.vectors import embed_new_images, read_vectors
from poster_assets.extract.versions import ALL_KINDS, SSL_KIND, current_versions
from poster_assets.ingest.decode import DecodeError, decode_image
from poster_assets.models.hub import Models
from poster_assets.models.ssl_encoder import ssl_dir
from poster_assets.search.index import IndexCorruptError, IndexMissingError, PosterIndex
from poster_assets.search.sync import index_dir
from poster_assets.storage.store import Store

# A query may be a small image; only the decoder's upper limit (64 MP) still applies.
_QUERY_MIN_SIDE = 8
_MIN_ID_PREFIX = 6


class SearchError(RuntimeError):
    """A search that cannot be answered, with the reason and what to do a person should read."""


@dataclass(frozen=True)
class SearchHit:
    poster_id: str
    score: float  # cosine similarity, 1 = same direction
    title: str | None
    genres: list[str] = field(default_factory=list)
    file_name: str = ""
    thumbnail_path: Path | None = None


def load_index(kind: str, store: Store | None = None) -> PosterIndex:
    """The saved index of ``kind``, or a SearchError that says how to build it."""
    if kind not in ALL_KINDS:
        raise SearchError(f"unknown embedding kind {kind!r}; choose one of {', '.join(ALL_KINDS)}")
    store = store or Store.at()
    folder = index_dir(store, kind)
    try:
        return PosterIndex.load(folder)
    except IndexMissingError:
        if kind == SSL_KIND:
            raise SearchError(
                f"there is no ssl index in {folder.parent}: train the encoder "
                "(`poster-assets train-encoder`), then `poster-assets run --all` embeds the posters with it"
            ) from None
        raise SearchError(
            f"there is no {kind} index in {folder.parent}: run `poster-assets run` to build the indexes "
            "(after `poster-assets ingest DIR`)"
        ) from None
    except IndexCorruptError as exc:
        raise SearchError(
            f"the {kind} index in {folder} cannot be read ({exc}): run `poster-assets run` to rebuild it"
        ) from None


def resolve_poster_id(query: str, kind: str, version: str, store: Store) -> str:
    """The full poster id for an id or a unique prefix of one, among posters with a vector."""
    query = query.strip().lower()
    if len(query) < _MIN_ID_PREFIX:
        raise SearchError(f"poster id {query!r} is too short: give at least {_MIN_ID_PREFIX} characters")
    found = [
        r[0]
        for r in _query(
            store,
            "SELECT DISTINCT poster_id FROM foreground_embeddings WHERE kind = ? AND model_version = ? "
            "AND starts_with(poster_id, ?) ORDER BY 1 LIMIT 3",
            [kind, version, query],
        )
    ]
    if not found:
        raise SearchError(
            f"no ingested poster with id {query} has a {kind} embedding at {version}: check the id "
            '(`poster-assets sql "SELECT poster_id, file_name FROM raw_posters"`) or run `poster-assets run`'
        )
    if len(found) > 1:
        raise SearchError(f"poster id prefix {query} is ambiguous ({', '.join(f[:16] for f in found)}, …)")
    return found[0]


def _query(store: Store, sql: str, params: list) -> list[tuple]:
    try:
        return store.db.query(sql, params)
    except FileNotFoundError as exc:
        raise SearchError(str(exc)) from None


def read_query_image(image_path: Path) -> np.ndarray:
    """The image file as upright RGB, or a SearchError saying why it cannot be read."""
    path = Path(image_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SearchError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return decode_image(data, min_side=_QUERY_MIN_SIDE).rgb_array()
    except DecodeError as exc:
        raise SearchError(f"cannot use {path} as a query image: {exc}") from None


def embed_image(rgb: np.ndarray, kind: str, models: Models | None = None) -> tuple[np.ndarray, str]:
    """(unit vector, version) of an outside image for ``kind``, as the stored posters were made."""
    models = models or Models()
    if kind == SSL_KIND and models.ssl_encoder() is None:
        raise SearchError(
            f"there is no trained encoder in {ssl_dir(models.path)}: run `poster-assets train-encoder`"
        )
    version = current_versions(models).kinds[kind]
    return embed_new_images(kind, [rgb], models)[0], version


def search(
    query_poster_id: str | None = None,
    image_path: Path | None = None,
    kind: str = "foreground",
    k: int = 10,
    store: Store | None = None,
    models: Models | None = None,
) -> list[SearchHit]:
    """The ``k`` posters most similar to an ingested poster (by id or unique id prefix; the
    poster itself is left out) or to an image file (an ingested poster's own copy is then
    normally the top hit), by cosine similarity of ``kind`` embeddings, best first.

    ``models`` defaults to the home's models folder; only image queries load models. Raises
    ``SearchError`` with a readable reason for every expected failure.
    """
    if (query_poster_id is None) == (image_path is None):
        raise SearchError("give exactly one of a poster id or an image path")
    if k < 1:
        raise SearchError(f"k must be at least 1, got {k}")
    store = store or Store.at()
    index = load_index(kind, store)
    if query_poster_id is not None:
        poster_id = resolve_poster_id(query_poster_id, kind, index.model_version, store)
        _, vectors = read_vectors(store, kind, index.model_version, [poster_id])
        query, skip = vectors[0], {poster_id}
    else:
        rgb = read_query_image(Path(image_path))
        query, version = embed_image(rgb, kind, models or Models(store.models_dir))
        if version != index.model_version:
            raise SearchError(
                f"the {kind} index was built from {index.model_version} but the models now give "
                f"{version}: run `poster-assets run` to re-embed the posters and rebuild the index"
            )
        skip = set()
    scores, hits = index.search(query[None, :], min(k + len(skip), index.count))
    ranked = [(pid, float(s)) for pid, s in zip(hits[0], scores[0], strict=False) if pid not in skip][:k]
    return describe(ranked, store)


def describe(ranked: list[tuple[str, float]], store: Store) -> list[SearchHit]:
    """SearchHits for (poster id, score) pairs, with title, genres, file and thumbnail."""
    if not ranked:
        return []
    info: dict[str, tuple] = {}
    for pid, title, genres, file_name, thumb in _query(
        store,
        "SELECT poster_id, title, genres, file_name, thumbnail_path FROM raw_posters "
        "WHERE poster_id IN ? AND status = 'ok' ORDER BY ingested_at",
        [[pid for pid, _ in ranked]],
    ):
        info.setdefault(pid, (title, genres, file_name, thumb))
    out = []
    for pid, score in ranked:
        title, genres, file_name, thumb = info.get(pid, (None, None, "", None))
        out.append(
            SearchHit(
                poster_id=pid,
                score=score,
                title=title,
                genres=list(genres or []),
                file_name=file_name,
                thumbnail_path=store.blobs.abspath(thumb) if thumb else None,
            )
        )
    return out


def poster_thumbnail(poster_id: str, store: Store | None = None) -> Path | None:
    """The stored thumbnail of an ingested poster (id or unique prefix), if any."""
    store = store or Store.at()
    rows = _query(
        store,
        "SELECT thumbnail_path FROM raw_posters WHERE starts_with(poster_id, ?) AND status = 'ok' "
        "AND thumbnail_path IS NOT NULL LIMIT 1",
        [poster_id.strip().lower()],
    )
    return store.blobs.abspath(rows[0][0]) if rows else None
