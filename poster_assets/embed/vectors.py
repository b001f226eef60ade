"""The vectors of ``foreground_embeddings``: made per chunk of posters, and read back.

Three kinds per poster (``embed.kinds``): ``foreground`` (the subject crop, from the stored
foreground mask), ``poster`` (the whole poster) and ``pixels`` (the raw-pixel baseline), plus
``ssl`` (the same foreground crop through the project's own trained encoder) once one is
current. Each kind has its own version (``extract.versions.kind_versions``), stored with its
vectors, so a new segmenter re-embeds foreground crops only and a re-trained encoder the ssl
kind only. An outside image (a search query, a near-duplicate variant) goes through exactly the
same steps, including the 8-bit rounding of the mask.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from poster_assets.embed.kinds import Embedder, embed_kind
from poster_assets.extract.runner import PosterRef, Rows, load_rgb
from poster_assets.extract.versions import ALL_KINDS, PIXELS_SIZE, SSL_KIND, CurrentVersions
from poster_assets.models.efficientnet_lite import FEATURE_DIM
from poster_assets.models.hub import Models
from poster_assets.models.ssl_encoder import EMBED_DIM
from poster_assets.storage.codecs import decode_mask, quantize_mask
from poster_assets.storage.store import Store

EMBEDDINGS_TABLE = "foreground_embeddings"
KIND_DIMS = {
    "foreground": FEATURE_DIM,
    "poster": FEATURE_DIM,
    "pixels": 3 * PIXELS_SIZE**2,
    SSL_KIND: EMBED_DIM,
}
# Kinds that embed the foreground crop and so need the poster's mask.
_CROP_KINDS = ("foreground", SSL_KIND)


def _input_kind(kind: str) -> str:
    """The ``embed.kinds`` kind whose input a kind uses: ssl embeds the foreground crop."""
    return "foreground" if kind == SSL_KIND else kind


def _network(kind: str, models: Models) -> Embedder | None:
    if kind == "pixels":
        return None
    if kind == SSL_KIND:
        encoder = models.ssl_encoder()
        if encoder is None:
            raise LookupError(f"the {SSL_KIND} kind needs a trained encoder (`poster-assets train-encoder`)")
        return models.ssl_embedder(encoder)
    return models.efficientnet()


def embed_new_images(kind: str, images: Sequence[np.ndarray], models: Models) -> np.ndarray:
    """(n, dim) unit vectors of images that are not in the store (queries, altered copies): the
    foreground and ssl kinds segment them first with the segmenter the store used."""
    masks = None
    if kind in _CROP_KINDS:
        masks = [quantize_mask(m) for m in models.foreground().predict_batch(list(images))]
    return embed_kind(_input_kind(kind), list(images), _network(kind, models), fg_masks=masks)


def missing_kinds(store: Store, poster_ids: Sequence[str], kinds: Mapping[str, str]) -> dict[str, list[str]]:
    """Per poster, the kinds of ``kinds`` with no vector at their current version."""
    have = {
        (pid, kind)
        for pid, kind, version in store.db.query(
            f"SELECT poster_id, kind, model_version FROM {EMBEDDINGS_TABLE} WHERE poster_id IN ?",
            [list(poster_ids)],
        )
        if kinds.get(kind) == version
    }
    return {pid: [k for k in ALL_KINDS if k in kinds and (pid, k) not in have] for pid in poster_ids}


def stored_masks(store: Store, poster_ids: Sequence[str], foreground_version: str) -> dict[str, np.ndarray]:
    if not poster_ids:
        return {}
    rows = store.db.query(
        "SELECT poster_id, mask_path FROM foreground_masks WHERE model_version = ? AND poster_id IN ?",
        [foreground_version, list(poster_ids)],
    )
    return {pid: decode_mask(store.blobs.abspath(path)) for pid, path in rows}


@dataclass
class ChunkResult:
    rows: dict[str, Rows]  # poster id -> rows (empty when every kind was already current)
    images: dict[str, np.ndarray]  # decoded posters that needed work
    masks: dict[str, np.ndarray]  # their stored foreground masks (foreground and ssl kinds only)


def embed_chunk(
    store: Store, refs: Sequence[PosterRef], models: Models, current: CurrentVersions
) -> ChunkResult:
    """Embed every kind each poster lacks at its current version, a batch per kind; each poster
    is decoded once. Raises when a poster needing a foreground crop has no mask at the current
    foreground version."""
    todo = missing_kinds(store, [r.poster_id for r in refs], current.kinds)
    images = {r.poster_id: load_rgb(store.blobs, r) for r in refs if todo[r.poster_id]}
    need_fg = [pid for pid in images if set(_CROP_KINDS) & set(todo[pid])]
    masks = stored_masks(store, need_fg, current.foreground)
    if lacking := [pid for pid in need_fg if pid not in masks]:
        raise LookupError(
            f"no foreground mask at {current.foreground} for {len(lacking)} poster(s): "
            "materialize foreground_masks for this batch first"
        )
    rows: dict[str, Rows] = {r.poster_id: {} for r in refs}
    for kind, version in current.kinds.items():
        ids = [pid for pid in images if kind in todo[pid]]
        if not ids:
            continue
        vectors = embed_kind(
            _input_kind(kind),
            [images[pid] for pid in ids],
            _network(kind, models),
            fg_masks=[masks[pid] for pid in ids] if kind in _CROP_KINDS else None,
        )
        for pid, vector in zip(ids, vectors, strict=True):
            rows[pid].setdefault(EMBEDDINGS_TABLE, []).append(
                {
                    "poster_id": pid,
                    "kind": kind,
                    "model_version": version,
                    "dim": int(vector.shape[0]),
                    "embedding": vector.astype(np.float32).tolist(),
                }
            )
    return ChunkResult(rows, images, masks)


def read_vectors(
    store: Store, kind: str, version: str, poster_ids: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """(poster ids, (n, dim) float32 vectors) of one kind at one version, ordered by id.
    Loads them all into memory: fine to a few million posters of 1280 floats per machine."""
    sql = f"SELECT poster_id, embedding FROM {EMBEDDINGS_TABLE} WHERE kind = ? AND model_version = ?"
    params: list = [kind, version]
    if poster_ids is not None:
        sql += " AND poster_id IN ?"
        params.append(list(poster_ids))
    rows = store.db.query(sql + " ORDER BY poster_id", params)
    if not rows:
        return [], np.empty((0, KIND_DIMS.get(kind, 0)), np.float32)
    return [r[0] for r in rows], np.asarray([r[1] for r in rows], dtype=np.float32)


def read_ids(store: Store, kind: str, version: str) -> tuple[list[str], int]:
    """(poster ids ordered by id, width) of the vectors of one kind at one version, without
    the vectors: what a rebuild reads first to plan its pages and shards."""
    rows = store.db.query(
        f"SELECT poster_id, dim FROM {EMBEDDINGS_TABLE} WHERE kind = ? AND model_version = ? "
        "ORDER BY poster_id",
        [kind, version],
    )
    dims = {r[1] for r in rows}
    if len(dims) > 1:
        raise ValueError(f"{kind} vectors at {version} have several widths: {sorted(dims)}")
    return [r[0] for r in rows], dims.pop() if dims else KIND_DIMS.get(kind, 0)


def iter_stored_vectors(
    store: Store, kind: str, version: str, page: int = 10_000
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(poster ids, (m, dim) float32 vectors) of one kind at one version, in storage order, a
    ``rowid`` range of ``page`` rows of the table at a time: one pass over the table whatever
    the corpus. (Pages of sorted ids would each scan the whole table for rows scattered over
    all of it: 0.7 s a page at 100k x 1280 against 0.2 s for a range of rows, 100x that at 1M.)
    Fetched as numpy, not Python lists, each page on its own short read-only connection, so
    writers are not kept waiting for the whole scan. A row moved meanwhile (a concurrent
    delete and compaction) can be missed: callers check that they got every id they expect."""
    sql = (
        f"SELECT poster_id, embedding FROM {EMBEDDINGS_TABLE} WHERE kind = ? AND model_version = ? "
        "AND rowid BETWEEN ? AND ?"
    )
    last = store.db.query(f"SELECT max(rowid) FROM {EMBEDDINGS_TABLE}")[0][0]
    for start in range(0, (last if last is not None else -1) + 1, page):
        with store.db.connect(read_only=True) as conn:
            got = conn.execute(sql, [kind, version, start, start + page - 1]).fetchnumpy()
        if len(got["poster_id"]):
            yield got["poster_id"], np.stack(got["embedding"]).astype(np.float32, copy=False)
