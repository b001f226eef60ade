"""What ``foreground_embeddings`` and ``faiss_index`` compute and store (no Dagster here).

Three embedding kinds per poster (``poster_assets.search.embed``): ``foreground`` (the subject
crop, from the stored foreground mask), ``poster`` (the whole poster) and ``pixels`` (the
raw-pixel baseline), plus ``ssl`` (the same foreground crop through the project's own trained
encoder, ``poster_assets.ssl``) once ``<models>/ssl/current.json`` names one. Each kind has
its own version, stored with its vectors, so a new segmenter re-embeds foreground crops only
and a re-trained encoder re-embeds the ssl kind only. An outside image (a search query, a near-duplicate
variant) goes through exactly the same steps, including the 8-bit rounding of the mask.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from poster_assets.extract.runner import PosterRef, Rows, load_rgb
from poster_assets.models.efficientnet_lite import (
    FEATURE_DIM,
    MODEL_NAME,
    EfficientNetLite0Embedder,
    weights_sha256,
)
from poster_assets.search.embed import EMBEDDING_KINDS, PIXELS_SIZE, Embedder, embed_kind, kind_version
from poster_assets.search.index import (
    IndexLoadError,
    IndexMissingError,
    PosterIndex,
    build_index,
    choose_index_spec,
    recall_at_k,
)
from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.database import Database

if TYPE_CHECKING:  # the encoder pulls in torch; only the ssl kind needs it
    from poster_assets.ssl.export import SslEmbedder

log = logging.getLogger(__name__)

EMBEDDINGS_ASSET = "foreground_embeddings"
EMBEDDINGS_METHOD_VERSION = "embed-v1"
SSL_KIND = "ssl"
# Every kind a poster can have; ssl only while a trained encoder exists.
ALL_KINDS = (*EMBEDDING_KINDS, SSL_KIND)
# poster_assets.ssl.model.EMBED_DIM, spelled out so this module does not import torch.
SSL_DIM = 128
KIND_DIMS = {
    "foreground": FEATURE_DIM,
    "poster": FEATURE_DIM,
    "pixels": 3 * PIXELS_SIZE**2,
    SSL_KIND: SSL_DIM,
}
SSL_POINTER = "current.json"
# What the ssl kind feeds the encoder: the foreground kind's crop (search.embed "fg-crop-v1").
_SSL_INPUT_VERSION = "fg-crop-v1"
NEIGHBORS_K = 10
RECALL_K = 10
RECALL_SAMPLE = 200
RECALL_TARGET = 0.95
# Held-out recall queries: an indexed vector moved off itself by noise of this share of its
# length (cosine ~0.9 to the original), so the query is not in the index.
_QUERY_NOISE = 0.5
_NEIGHBOR_CHUNK = 10_000


# --- versions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Named:
    version: str


def efficientnet_version() -> str:
    """The embedder's version without loading (or converting) the network, for the model
    source asset and for deciding whether there is work. Equal to
    ``EfficientNetLite0Embedder.version`` (a test holds them together)."""
    return f"{MODEL_NAME}@imagenet+{weights_sha256()[:12]}"


def kind_versions(foreground_version: str, ssl_version: str | None = None) -> dict[str, str]:
    """The version stored with each kind's vectors. The foreground and ssl kinds also name the
    mask model: a new segmenter changes the crops, so it re-embeds them (and only them). The
    ssl kind is there only with an ``ssl_version`` (``SslEncoder.version``)."""
    net = _Named(efficientnet_version())
    versions = {
        "foreground": f"{kind_version('foreground', net)}+mask:{foreground_version}",
        "poster": kind_version("poster", net),
        "pixels": kind_version("pixels"),
    }
    if ssl_version:
        versions[SSL_KIND] = f"{SSL_KIND}:{_SSL_INPUT_VERSION}+{ssl_version}+mask:{foreground_version}"
    return versions


def embeddings_version(versions: Mapping[str, str]) -> str:
    """The ``extractions`` version of the asset: it changes when any kind's version does, and
    then only the kinds without a row at their own version are recomputed."""
    text = "|".join(f"{k}={versions[k]}" for k in sorted(versions))
    return f"{EMBEDDINGS_METHOD_VERSION}+{hashlib.sha1(text.encode()).hexdigest()[:12]}"


# --- the trained encoder ---------------------------------------------------------------------


def ssl_dir(models_dir: Path) -> Path:
    """Where ``poster_encoder`` keeps its encoders and the pointer to the current one."""
    return Path(models_dir) / "ssl"


@dataclass(frozen=True)
class SslEncoder:
    """The current trained encoder, as ``<models>/ssl/current.json`` names it."""

    version: str  # SslEmbedder.version of the IR
    ir_path: Path
    data_version: str
    checkpoint: Path

    def embedder(self) -> SslEmbedder:
        net = _ssl_embedder(self.ir_path)
        if net.version != self.version:
            raise RuntimeError(f"{self.ir_path} is {net.version}, but {SSL_POINTER} says {self.version}")
        return net


def current_ssl_encoder(models_dir: Path) -> SslEncoder | None:
    """The encoder the pointer file names, or None before the first training (or when the
    pointer names an IR that is gone)."""
    folder = ssl_dir(models_dir)
    try:
        data = json.loads((folder / SSL_POINTER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    # Paths are stored relative to the ssl folder, so a copied or moved home keeps working.
    encoder = SslEncoder(
        version=data["version"],
        ir_path=folder / data["ir_path"],
        data_version=data["data_version"],
        checkpoint=folder / data["checkpoint"],
    )
    if not encoder.ir_path.exists():
        log.warning("%s names %s, which does not exist: no ssl kind", folder / SSL_POINTER, encoder.ir_path)
        return None
    return encoder


def ssl_version(models_dir: Path) -> str | None:
    encoder = current_ssl_encoder(models_dir)
    return encoder.version if encoder else None


def write_ssl_pointer(
    models_dir: Path, ir_path: Path, version: str, data_version: str, checkpoint: Path
) -> Path:
    """Point ``current.json`` at an exported encoder: written under a temporary name and
    renamed, so a reader sees the old pointer or the new one, never half of one."""
    folder = ssl_dir(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "ir_path": os.path.relpath(ir_path, folder),
        "version": version,
        "data_version": data_version,
        "checkpoint": os.path.relpath(checkpoint, folder),
    }
    fd, tmp = tempfile.mkstemp(prefix=".current-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, folder / SSL_POINTER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / SSL_POINTER


@functools.lru_cache(maxsize=2)
def _ssl_embedder(ir_path: Path) -> SslEmbedder:
    # IR folders are named by the checkpoint's hash, so a path always holds the same encoder.
    from poster_assets.ssl.export import SslEmbedder

    return SslEmbedder(ir_path)


# --- embedding -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def embedder(models_dir: Path) -> EfficientNetLite0Embedder:
    """One EfficientNet-Lite0 per process and models folder. Its IR and compile cache go to
    ``<parent of models_dir>/models`` (the home's models folder, the default)."""
    return EfficientNetLite0Embedder(home=Path(models_dir).parent)


def as_stored_mask(prob: np.ndarray) -> np.ndarray:
    """A foreground probability map as its 8-bit PNG in ``foreground_masks`` reads back, so a
    query image is cropped from the same mask a stored poster would be."""
    return np.round(np.clip(prob, 0.0, 1.0) * 255).astype(np.uint8).astype(np.float32) / 255.0


class Segmenter(Protocol):  # the part of ForegroundSegmenter used here
    version: str

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]: ...


def _model_kind(kind: str) -> str:
    """The ``search.embed`` kind whose input a kind uses: ssl embeds the foreground crop."""
    return "foreground" if kind == SSL_KIND else kind


def embed_new_images(
    kind: str, images: Sequence[np.ndarray], net: Callable[[], Embedder], segmenter: Segmenter | None
) -> np.ndarray:
    """(n, dim) unit vectors of images that are not in the store (queries, altered copies):
    the foreground and ssl kinds segment them first with the same segmenter the store used.
    ``net`` gives the kind's network (the SslEmbedder for ssl)."""
    masks = None
    if _model_kind(kind) == "foreground":
        if segmenter is None:
            raise ValueError(f"the {kind} kind needs the foreground segmenter")
        masks = [as_stored_mask(m) for m in segmenter.predict_batch(list(images))]
    return embed_kind(_model_kind(kind), list(images), None if kind == "pixels" else net(), fg_masks=masks)


def missing_kinds(
    db: Database, poster_ids: Sequence[str], versions: Mapping[str, str]
) -> dict[str, list[str]]:
    """Per poster, the kinds of ``versions`` with no vector at their current version."""
    have = {
        (pid, kind)
        for pid, kind, version in db.query(
            "SELECT poster_id, kind, model_version FROM foreground_embeddings WHERE poster_id IN ?",
            [list(poster_ids)],
        )
        if versions.get(kind) == version
    }
    return {pid: [k for k in ALL_KINDS if k in versions and (pid, k) not in have] for pid in poster_ids}


def stored_masks(
    db: Database, blobs: BlobStore, poster_ids: Sequence[str], foreground_version: str
) -> dict[str, np.ndarray]:
    # Imported here: extract.steps pulls in scikit-learn, which a search query never needs.
    from poster_assets.extract.steps import read_mask

    if not poster_ids:
        return {}
    rows = db.query(
        "SELECT poster_id, mask_path FROM foreground_masks WHERE model_version = ? AND poster_id IN ?",
        [foreground_version, list(poster_ids)],
    )
    return {pid: read_mask(blobs, path) for pid, path in rows}


@dataclass
class ChunkResult:
    rows: dict[str, Rows]  # poster id -> rows (empty when every kind was already current)
    images: dict[str, np.ndarray]  # decoded posters that needed work
    masks: dict[str, np.ndarray]  # their stored foreground masks (foreground and ssl kinds only)


def embed_chunk(
    db: Database,
    blobs: BlobStore,
    refs: Sequence[PosterRef],
    foreground_version: str,
    net: Callable[[], Embedder],
    ssl: SslEncoder | None = None,
) -> ChunkResult:
    """Embed every kind each poster lacks at its current version, a batch per kind; each
    poster is decoded once. The ssl kind is computed only with an ``ssl`` encoder. Raises
    when a poster needing a foreground crop has no mask at ``foreground_version``."""
    versions = kind_versions(foreground_version, ssl.version if ssl else None)
    todo = missing_kinds(db, [r.poster_id for r in refs], versions)
    images = {r.poster_id: load_rgb(blobs, r) for r in refs if todo[r.poster_id]}
    need_fg = [pid for pid in images if {"foreground", SSL_KIND} & set(todo[pid])]
    masks = stored_masks(db, blobs, need_fg, foreground_version)
    if lacking := [pid for pid in need_fg if pid not in masks]:
        raise LookupError(
            f"no foreground mask at {foreground_version} for {len(lacking)} poster(s): "
            "materialize foreground_masks for this batch first"
        )
    rows: dict[str, Rows] = {r.poster_id: {} for r in refs}
    for kind in versions:
        ids = [pid for pid in images if kind in todo[pid]]
        if not ids:
            continue
        model = None if kind == "pixels" else ssl.embedder() if kind == SSL_KIND and ssl else net()
        vectors = embed_kind(
            _model_kind(kind),
            [images[pid] for pid in ids],
            model,
            fg_masks=[masks[pid] for pid in ids] if _model_kind(kind) == "foreground" else None,
        )
        for pid, vector in zip(ids, vectors, strict=True):
            rows[pid].setdefault("foreground_embeddings", []).append(
                {
                    "poster_id": pid,
                    "kind": kind,
                    "model_version": versions[kind],
                    "dim": int(vector.shape[0]),
                    "embedding": vector.astype(np.float32).tolist(),
                }
            )
    return ChunkResult(rows, images, masks)


def read_vectors(
    db: Database, kind: str, version: str, poster_ids: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """(poster ids, (n, dim) float32 vectors) of one kind at one version, ordered by id.
    Loads them all into memory: fine to a few million posters of 1280 floats per machine."""
    sql = "SELECT poster_id, embedding FROM foreground_embeddings WHERE kind = ? AND model_version = ?"
    params: list = [kind, version]
    if poster_ids is not None:
        sql += " AND poster_id IN ?"
        params.append(list(poster_ids))
    rows = db.query(sql + " ORDER BY poster_id", params)
    if not rows:
        return [], np.empty((0, KIND_DIMS.get(kind, 0)), np.float32)
    return [r[0] for r in rows], np.asarray([r[1] for r in rows], dtype=np.float32)


# --- indexes ---------------------------------------------------------------------------------


def index_dir(home: Path, kind: str) -> Path:
    return Path(home) / "indexes" / kind


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


def sync_index(db: Database, folder: Path, kind: str, version: str) -> IndexUpdate:
    """Bring the saved index of ``kind`` up to the table's vectors at ``version``.

    An index saved at the same version gets only the new posters (no retraining). It is
    rebuilt from the table when it is missing or unreadable, was built at another version,
    holds posters the table no longer has at this version, or has outgrown its index type.
    With no vectors at ``version`` the saved index is left as it is.
    """
    ids, vectors = read_vectors(db, kind, version)
    if not ids:
        return IndexUpdate(kind, version, "empty", f"no {kind} embeddings at {version}", 0, None, vectors)
    row_of = {pid: i for i, pid in enumerate(ids)}
    reason = ""
    index: PosterIndex | None = None
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
    return IndexUpdate(kind, version, "build", reason, len(ids), built, vectors)


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


def write_neighbors(db: Database, updates: Sequence[IndexUpdate], k: int = NEIGHBORS_K) -> int:
    """Replace ``poster_neighbors`` with the top-``k`` of every index, in one transaction
    (readers see the old table or the new one). Returns the rows written."""
    columns = [(u, neighbor_columns(u.index, u.vectors, k)) for u in updates if u.index is not None]
    written = 0
    with db.transaction() as conn:
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
