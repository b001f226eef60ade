"""Similarity search over the saved FAISS indexes, for people and for code.

    from poster_assets.search.api import search
    search(query_poster_id="3fa2…")                  # posters like an ingested one
    search(image_path=Path("new.jpg"), kind="poster")  # posters like any image file

An outside image goes through exactly the pipeline the stored posters went through (decode,
foreground mask from the same segmenter, crop, EfficientNet-Lite0 or, for the ``ssl`` kind, the
current trained encoder), and its version is checked against the index's, so a query is never
compared with vectors of another model.

An image that *is* a stored poster comes first whatever the kind: the same bytes (its sha256 is
the poster id) as an ``exact`` match with score 1, then the same picture resized, recompressed
or slightly cropped as a ``near-duplicate`` (``search.duplicates``), then the kind's ranking
(``similar``). ``SearchHit.match`` says which.
"""

from __future__ import annotations

import hashlib
import logging
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poster_assets.embed.kinds import raw_pixel_embedding
from poster_assets.embed.vectors import EMBEDDINGS_TABLE, embed_new_images, read_vectors
from poster_assets.extract.versions import ALL_KINDS, PIXELS_VERSION, SSL_KIND, current_versions
from poster_assets.ingest.decode import DecodeError, decode_image
from poster_assets.ingest.ingest import Unusable, open_regular
from poster_assets.models.hub import Models
from poster_assets.models.ssl_encoder import ssl_dir
from poster_assets.models.weights import ModelUnavailableError
from poster_assets.search.duplicates import PIXEL_CANDIDATES, Duplicate, near_duplicates
from poster_assets.search.index import IndexCorruptError, IndexLoadError, IndexMissingError, PosterIndex
from poster_assets.search.sync import index_dir
from poster_assets.storage.store import Store

log = logging.getLogger(__name__)

# A query may be a small image; only the decoder's upper limit (64 MP) still applies.
_QUERY_MIN_SIDE = 8
_MIN_ID_PREFIX = 6
# The kind's own top hits that are also checked for being near-duplicates of an image query.
_KIND_CANDIDATES = 10

# Why a hit ranks where it does (SearchHit.match), for people.
MATCHES = {
    "exact": "the same file (its sha256 is the poster id)",
    "near-duplicate": "the same picture resized, recompressed or cropped a little",
    "similar": "ranked by the kind's cosine similarity",
}


class SearchError(RuntimeError):
    """A search that cannot be answered, with the reason and what to do a person should read."""


@dataclass(frozen=True)
class SearchHit:
    """One poster found. Exact and near-duplicate matches of an image query come first (in
    that order), then the kind's ranking; ``match`` says which a hit is (see ``MATCHES``)."""

    poster_id: str
    score: float  # cosine similarity of the kind's vectors, 1 = same direction; 1 for an exact match
    title: str | None
    genres: list[str] = field(default_factory=list)
    file_name: str = ""
    thumbnail_path: Path | None = None
    match: str = "similar"  # "exact" | "near-duplicate" | "similar"
    # Why a duplicate is one: 1 for exact, else the crop-tolerant whole-image similarity.
    duplicate_similarity: float | None = None


@dataclass(frozen=True)
class QueryImage:
    rgb: np.ndarray  # upright RGB
    sha256: str  # of the file's bytes: the poster id it would have if ingested


def load_index(kind: str, store: Store | None = None) -> PosterIndex:
    """The saved index of ``kind`` (a ``ShardedIndex`` over all its shards where it is split by
    poster-id range: searched together, merged by exact score), or a SearchError that says how
    to build it."""
    if kind not in ALL_KINDS:
        raise SearchError(f"unknown embedding kind {kind!r}; choose one of {', '.join(ALL_KINDS)}")
    store = store or Store.at()
    folder = index_dir(store, kind)
    # `poster-assets run` only materializes what Dagster sees as missing or stale; a file damaged
    # (or removed) after the index was materialized is neither, so the advice is rebuild-index.
    try:
        return PosterIndex.load(folder)
    except IndexMissingError as exc:
        if _has_embeddings(store, kind):
            raise SearchError(
                f"the {kind} index in {folder} is missing ({exc}): run `poster-assets rebuild-index` "
                "to rebuild it from the stored embeddings"
            ) from None
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
            f"the {kind} index in {folder} is damaged ({exc}): run `poster-assets rebuild-index` to "
            "rebuild it from the stored embeddings"
        ) from None


def _has_embeddings(store: Store, kind: str) -> bool:
    try:
        rows = store.db.query(f"SELECT 1 FROM {EMBEDDINGS_TABLE} WHERE kind = ? LIMIT 1", [kind])
    except FileNotFoundError:
        return False
    return bool(rows)


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


def read_query_file(image_path: Path) -> QueryImage:
    """The image file as upright RGB with the sha256 of its bytes, or a SearchError saying why
    it cannot be used. Only a regular file is opened: a FIFO would block until some writer
    came, a device (``/dev/zero``) never ends; neither is ever read."""
    path = Path(image_path)
    try:
        mode = path.stat().st_mode  # follows a symlink to what it names
    except OSError as exc:
        raise SearchError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        detail = "" if stat.S_ISDIR(mode) else " (a named pipe, device or socket is never read)"
        raise SearchError(f"cannot use {path} as a query image: it is {what}{detail}")
    try:
        # Opened non-blocking and checked again after opening, as ingest does; size-limited too.
        with open_regular(str(path)) as fh:
            data = fh.read()
    except Unusable as exc:
        raise SearchError(f"cannot use {path} as a query image: {exc.reason}") from None
    except OSError as exc:
        raise SearchError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        rgb = decode_image(data, min_side=_QUERY_MIN_SIDE).rgb_array()
    except DecodeError as exc:
        raise SearchError(f"cannot use {path} as a query image: {exc}") from None
    return QueryImage(rgb, hashlib.sha256(data).hexdigest())


def read_query_image(image_path: Path) -> np.ndarray:
    """The image file as upright RGB, or a SearchError saying why it cannot be read."""
    return read_query_file(image_path).rgb


def embed_image(rgb: np.ndarray, kind: str, models: Models | None = None) -> tuple[np.ndarray, str]:
    """(unit vector, version) of an outside image for ``kind``, as the stored posters were made."""
    models = models or Models()
    if kind == SSL_KIND and models.ssl_encoder() is None:
        raise SearchError(
            f"there is no trained encoder in {ssl_dir(models.path)}: run `poster-assets train-encoder`"
        )
    try:
        version = current_versions(models).kinds[kind]
        return embed_new_images(kind, [rgb], models)[0], version
    except ModelUnavailableError as exc:  # weights missing, or a converted model that fails its sha256
        raise SearchError(f"cannot embed the query with the {kind} kind: {exc}") from None


def search(
    query_poster_id: str | None = None,
    image_path: Path | None = None,
    kind: str = "foreground",
    k: int = 10,
    store: Store | None = None,
    models: Models | None = None,
) -> list[SearchHit]:
    """The ``k`` posters most similar to an ingested poster (by id or unique id prefix; the
    poster itself is left out) or to an image file, by cosine similarity of ``kind``
    embeddings, best first. For an image file, the poster it is a copy of ranks first whatever
    the kind: an exact copy (same bytes), then near-duplicates (resized, recompressed, slightly
    cropped), then the kind's ranking; ``SearchHit.match`` says which each hit is.

    ``models`` defaults to the home's models folder; only image queries load models. Raises
    ``SearchError`` with a readable reason for every expected failure.
    """
    if (query_poster_id is None) == (image_path is None):
        raise SearchError("give exactly one of a poster id or an image path")
    if k < 1:
        raise SearchError(f"k must be at least 1, got {k}")
    store = store or Store.at()
    # The query file first: a FIFO or a broken file is refused before anything is loaded.
    image = read_query_file(Path(image_path)) if image_path is not None else None
    index = load_index(kind, store)
    if query_poster_id is not None:
        poster_id = resolve_poster_id(query_poster_id, kind, index.model_version, store)
        _, vectors = read_vectors(store, kind, index.model_version, [poster_id])
        scores, hits = index.search(vectors[0][None, :], min(k + 1, index.count))
        ranked = [(pid, float(s)) for pid, s in zip(hits[0], scores[0], strict=False) if pid != poster_id]
        return describe(ranked[:k], store)
    assert image is not None
    query, version = embed_image(image.rgb, kind, models or Models(store.models_dir))
    if version != index.model_version:
        raise SearchError(
            f"the {kind} index was built from {index.model_version} but the models now give "
            f"{version}: run `poster-assets run --all` to re-embed the posters and rebuild the index"
        )
    scores, hits = index.search(query[None, :], min(max(k, _KIND_CANDIDATES), index.count))
    similar = {pid: float(s) for pid, s in zip(hits[0], scores[0], strict=False)}
    duplicates = find_duplicates(image, kind, index, query, list(similar)[:_KIND_CANDIDATES], store)
    # Duplicates first (with the kind's score; 1 for the exact copy), then the kind's ranking.
    score = {**similar, **{d.poster_id: 1.0 for d in duplicates if d.match == "exact"}}
    if missing := [d.poster_id for d in duplicates if d.poster_id not in score]:
        ids, vectors = read_vectors(store, kind, index.model_version, missing)
        score.update({pid: float(v @ query) for pid, v in zip(ids, vectors, strict=True)})
    first = [d.poster_id for d in duplicates if d.poster_id in score]
    placed = set(first)
    ranked = [(pid, score[pid]) for pid in first] + [(p, s) for p, s in similar.items() if p not in placed]
    return describe(ranked[:k], store, {d.poster_id: d for d in duplicates})


def find_duplicates(
    image: QueryImage,
    kind: str,
    index: PosterIndex,
    query: np.ndarray,
    kind_candidates: list[str],
    store: Store,
) -> list[Duplicate]:
    """The stored posters ``image`` is a copy of: the exact one (same bytes), then the
    near-duplicates among the nearest posters of the pixels index and the kind's own top
    ``kind_candidates``, most similar first. Near-duplicates must be in ``index``."""
    found: list[Duplicate] = []
    if _query(
        store, "SELECT 1 FROM raw_posters WHERE poster_id = ? AND status = 'ok' LIMIT 1", [image.sha256]
    ):
        found.append(Duplicate(image.sha256, "exact", 1.0))
    stored: dict[str, float] = {}
    pixels = index if kind == "pixels" else _pixels_index(store)
    if pixels is not None and pixels.model_version == PIXELS_VERSION:
        vector = query if kind == "pixels" else raw_pixel_embedding(image.rgb)
        scores, hits = pixels.search(vector[None, :], min(PIXEL_CANDIDATES, pixels.count))
        stored = {pid: float(s) for pid, s in zip(hits[0], scores[0], strict=False)}
    candidates = [pid for pid in [*stored, *kind_candidates] if pid in index and pid != image.sha256]
    if not candidates:
        return found
    thumbnails = {
        pid: store.blobs.abspath(path) if path else None
        for pid, path in _query(
            store,
            "SELECT poster_id, any_value(thumbnail_path) FROM raw_posters WHERE poster_id IN ? "
            "AND status = 'ok' GROUP BY poster_id",
            [candidates],
        )
    }
    return found + near_duplicates(image.rgb, candidates, thumbnails, stored)


def _pixels_index(store: Store) -> PosterIndex | None:
    """The saved pixels index, the source of near-duplicate candidates; without it (not built,
    damaged) only the kind's own top hits are checked."""
    try:
        return PosterIndex.load(index_dir(store, "pixels"))
    except IndexLoadError as exc:
        log.warning("near-duplicates only among the kind's top hits: %s", exc)
        return None


def describe(
    ranked: list[tuple[str, float]], store: Store, duplicates: dict[str, Duplicate] | None = None
) -> list[SearchHit]:
    """SearchHits for (poster id, score) pairs, with title, genres, file and thumbnail, and
    how each matched (``duplicates``: the exact and near-duplicate ones; the rest are similar)."""
    if not ranked:
        return []
    duplicates = duplicates or {}
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
        duplicate = duplicates.get(pid)
        out.append(
            SearchHit(
                poster_id=pid,
                score=score,
                title=title,
                genres=list(genres or []),
                file_name=file_name,
                thumbnail_path=store.blobs.abspath(thumb) if thumb else None,
                match=duplicate.match if duplicate else "similar",
                duplicate_similarity=duplicate.similarity if duplicate else None,
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
