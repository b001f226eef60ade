"""The extractors' pass over a batch: OCR, depth, foreground and layers, a chunk of posters at a time.

Each poster of a chunk is decoded once. OCR runs on the calling thread (``OcrEngine.read_many``
spreads it over its own pool of engines) while the depth and foreground networks run on a worker
thread (OpenVINO releases the GIL while it infers); the layers are then fused from those results
in memory, or from the stored values for an input that was already current. The chunk's rows of
every extractor are written in one transaction with their ``extractions`` rows.

The guarantees are ``runner``'s: an extractor touches only posters without a record at its
current version, a failing poster fails alone with its reason (for each extractor it was due
for), and memory holds one chunk whatever the size of the batch. Runners are built only for the
extractors that have work, so a pass with nothing to do loads and compiles no model.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np

from poster_assets.extract import rows
from poster_assets.extract.runner import (
    ExtractionStats,
    Outcome,
    PosterRef,
    batch_posters,
    batched,
    done_posters,
    guarded,
    load_rgb,
    write_chunk,
)
from poster_assets.extract.versions import CurrentVersions
from poster_assets.models.dense import DenseEstimator
from poster_assets.models.hub import Models
from poster_assets.models.ocr import OcrEngine
from poster_assets.storage.catalog import refresh_catalog
from poster_assets.storage.codecs import decode_depth, decode_mask, quantize_mask
from poster_assets.storage.store import Store

log = logging.getLogger(__name__)

OCR, DEPTH, FOREGROUND, LAYERS = "ocr_text", "depth_maps", "foreground_masks", "layer_masks"
EXTRACTORS = (OCR, DEPTH, FOREGROUND, LAYERS)  # inputs before the layers fused from them
# The image-to-map extractors: how a ``Models`` builds each one's estimator, and its rows.
DENSE: dict[str, tuple[Callable[[Models], DenseEstimator], Callable[..., rows.Rows]]] = {
    DEPTH: (Models.depth, rows.depth_rows),
    FOREGROUND: (Models.foreground, rows.foreground_rows),
}

OcrItems = list[tuple[list[int], str, float]]  # (box, text, confidence) in reading order


@dataclass
class PassResult:
    """What a pass did per extractor, the runners it built (only for extractors that had work)
    and the extractors it could not run: asset -> why (a runner that could not be built, or
    the layers when one of their inputs could not run)."""

    stats: dict[str, ExtractionStats]
    ocr: OcrEngine | None = None
    dense: dict[str, DenseEstimator] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredInputs:
    """A poster's stored layer inputs at the current versions: file paths (None when missing)
    and its OCR lines."""

    depth_path: str | None = None
    mask_path: str | None = None
    ocr: OcrItems = field(default_factory=list)


def extract_batch(
    store: Store,
    models: Models,
    batch: str,
    current: CurrentVersions,
    extractors: Collection[str] = EXTRACTORS,
    chunk_size: int = 16,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> PassResult:
    """Run ``extractors`` (of ``EXTRACTORS``) over the batch's posters that lack a record at
    their ``current`` version. After each chunk, ``progress(done, total, seconds)``: where the
    chunk's time went (decode, ocr, dense (beside ocr), layers, write, and its total)."""
    versions = {a: current.by_asset()[a] for a in EXTRACTORS if a in extractors}
    with store.db.session(read_only=False):
        refresh_catalog(store.db, batch)  # what a step before left in the lake
        everything = batch_posters(store.db, batch)
        done = done_posters(store.db, batch, versions)
    todo = {a: {r.poster_id for r in everything} - done[a] for a in versions}
    result = PassResult(
        {
            a: ExtractionStats(a, v, in_batch=len(everything), up_to_date=len(everything) - len(todo[a]))
            for a, v in versions.items()
        }
    )
    if any(todo.values()):
        _build_runners(models, versions, todo, result)
    pending = [r for r in everything if any(r.poster_id in t for t in todo.values())]
    chunk = _Chunk(store, current, todo, result)
    t0 = time.perf_counter()
    # One worker: a chunk's dense networks run beside its OCR, one estimator after the other.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dense") as worker:
        for start in range(0, len(pending), chunk_size):
            t_chunk, seconds = time.perf_counter(), {}
            made = chunk.run(pending[start : start + chunk_size], worker, seconds)
            with _timed(seconds, "write"):
                write_chunk(store.db, batch, [(a, versions[a], made[a]) for a in made if made[a]])
            for asset, outcomes in made.items():
                result.stats[asset].count(outcomes)
            seconds["total"] = time.perf_counter() - t_chunk
            if progress:
                progress(min(start + chunk_size, len(pending)), len(pending), seconds)
    refresh_catalog(store.db, batch)  # the steps after this one read the catalog
    for stats in result.stats.values():
        stats.seconds = time.perf_counter() - t0
    return result


def _build_runners(
    models: Models, versions: Mapping[str, str], todo: dict[str, set[str]], result: PassResult
) -> None:
    """Build the runners of the extractors with work. One that cannot be built (say a model file
    that verifies but does not compile; PP-OCR has no fallback) leaves its extractor, and the
    layers that need it, out of the pass (``result.unavailable``); the others still run."""
    if todo.get(OCR):
        result.ocr = _built(OCR, models.ocr, versions, todo, result)
    for asset, (estimator, _) in DENSE.items():
        if todo.get(asset) and (runner := _built(asset, partial(estimator, models), versions, todo, result)):
            result.dense[asset] = runner
    if LAYERS in todo and (missing := sorted(set(result.unavailable) & set(EXTRACTORS))):
        result.unavailable[LAYERS] = f"not run: {', '.join(missing)} could not run"
        todo[LAYERS] = set()


_Runner = TypeVar("_Runner", OcrEngine, DenseEstimator)


def _built(
    asset: str,
    build: Callable[[], _Runner],
    versions: Mapping[str, str],
    todo: dict[str, set[str]],
    result: PassResult,
) -> _Runner | None:
    """The runner ``build`` makes for ``asset``, or None: then why is in ``result.unavailable``
    and the asset has nothing left to do in this pass."""
    try:
        runner = build()
        version = runner.version  # OCR compiles its networks here, at their first use
    except Exception as exc:  # noqa: BLE001 - the other extractors still run
        reason = f"{type(exc).__name__}: {exc}"
    else:
        if version == versions[asset]:
            return runner
        # Values labelled with another version than the one staleness was decided by would be
        # redone on every run.
        reason = f"the models folder names {versions[asset]} as current, but its runner is {version}"
    log.warning("%s cannot run: %s", asset, reason)
    result.unavailable[asset] = reason
    todo[asset] = set()
    return None


@dataclass
class _Chunk:
    """One chunk's work, given what each extractor still has to do in the batch."""

    store: Store
    current: CurrentVersions
    todo: Mapping[str, set[str]]
    runners: PassResult

    def run(
        self, refs: Sequence[PosterRef], worker: ThreadPoolExecutor, seconds: dict[str, float]
    ) -> dict[str, list[Outcome]]:
        """Each due extractor's outcomes for ``refs``; adds where the time went to ``seconds``."""
        with _timed(seconds, "decode"):
            images, broken = self._decode(refs)
        out: dict[str, list[Outcome]] = {
            a: [Outcome(pid, error=err) for pid, err in broken.items() if pid in due]
            for a, due in self.todo.items()
        }
        due = {
            a: [r for r in refs if r.poster_id in images and r.poster_id in ids]
            for a, ids in self.todo.items()
        }
        dense = worker.submit(self._dense, due, images, seconds)
        with _timed(seconds, "ocr"):
            if due.get(OCR):
                out[OCR] += self._ocr(due[OCR], images)
        dense_out, probs = dense.result()
        for asset, outcomes in dense_out.items():
            out[asset] += outcomes
        with _timed(seconds, "layers"):
            if due.get(LAYERS):
                out[LAYERS] += self._layers(due[LAYERS], images, out, probs)
        return out

    def _decode(self, refs: Sequence[PosterRef]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """(poster id -> RGB, poster id -> why it could not be decoded)."""
        images, broken = {}, {}
        for ref in refs:
            try:
                images[ref.poster_id] = load_rgb(self.store.blobs, ref)
            except Exception as exc:  # noqa: BLE001 - an unreadable poster fails alone
                log.warning("poster %s could not be decoded: %s", ref.file_name, exc)
                broken[ref.poster_id] = f"{type(exc).__name__}: {exc}"
        return images, broken

    def _ocr(self, refs: list[PosterRef], images: Mapping[str, np.ndarray]) -> list[Outcome]:
        engine = self.runners.ocr
        assert engine is not None

        def many(chunk: Sequence[PosterRef]) -> list[rows.Rows]:
            found = engine.read_many([images[r.poster_id] for r in chunk])
            return [rows.ocr_rows(r, items, engine.version) for r, items in zip(chunk, found, strict=True)]

        return batched(many)(refs)

    def _dense(
        self, due: Mapping[str, list[PosterRef]], images: Mapping[str, np.ndarray], seconds: dict[str, float]
    ) -> tuple[dict[str, list[Outcome]], dict[str, np.ndarray]]:
        """Each dense extractor's outcomes, and the foreground probabilities (for the layers)."""
        out: dict[str, list[Outcome]] = {}
        probs: dict[str, np.ndarray] = {}
        with _timed(seconds, "dense"):
            for asset, estimator in self.runners.dense.items():
                if due.get(asset):
                    keep = probs if asset == FOREGROUND else None
                    out[asset] = batched(self._estimate(asset, estimator, images, keep))(due[asset])
        return out, probs

    def _estimate(
        self,
        asset: str,
        estimator: DenseEstimator,
        images: Mapping[str, np.ndarray],
        keep: dict[str, np.ndarray] | None,
    ) -> Callable[[Sequence[PosterRef]], list[rows.Rows]]:
        """``batched``'s function for one dense extractor; it keeps the maps in ``keep``."""
        to_rows, blobs = DENSE[asset][1], self.store.blobs

        def many(chunk: Sequence[PosterRef]) -> list[rows.Rows]:
            found = estimator.predict_batch([images[r.poster_id] for r in chunk])
            if keep is not None:
                keep.update((r.poster_id, m) for r, m in zip(chunk, found, strict=True))
            return [to_rows(r, m, estimator.version, blobs) for r, m in zip(chunk, found, strict=True)]

        return many

    def _layers(
        self,
        refs: list[PosterRef],
        images: Mapping[str, np.ndarray],
        made: Mapping[str, list[Outcome]],
        probs: Mapping[str, np.ndarray],
    ) -> list[Outcome]:
        """The layers of ``refs``, from the inputs this chunk made (the foreground quantized as
        its PNG stores it, the depth read back from the PNG just written) and, for inputs that
        were already current, from the store."""
        ok = {
            a: {o.poster_id: o.rows[a] for o in made.get(a, []) if not o.error}
            for a in (OCR, DEPTH, FOREGROUND)
        }
        lacking = [r.poster_id for r in refs if not all(r.poster_id in made_ok for made_ok in ok.values())]
        stored = stored_inputs(self.store, lacking, self.current)
        c, blobs = self.current, self.store.blobs
        versions = {"depth": c.depth, "foreground": c.foreground, "ocr": c.ocr, "layers": c.layers}

        def one(ref: PosterRef) -> rows.Rows:
            pid = ref.poster_id
            have = stored.get(pid, StoredInputs())
            depth_path = ok[DEPTH][pid][0]["depth_path"] if pid in ok[DEPTH] else have.depth_path
            fg = None
            if pid in ok[FOREGROUND]:
                fg = quantize_mask(probs[pid])
            elif have.mask_path is not None:
                fg = decode_mask(blobs.abspath(have.mask_path))
            if depth_path is None or fg is None:
                raise LookupError("no depth map or foreground mask at the current model versions")
            ocr = _ocr_items(ok[OCR][pid]) if pid in ok[OCR] else have.ocr
            depth = decode_depth(blobs.abspath(depth_path))
            layers, title = rows.compute_layers(images[pid], depth, fg, ocr)
            return rows.layer_rows(ref, layers, title, versions, blobs)

        return guarded(one)(refs)


@contextlib.contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - t0


def _ocr_items(ocr_rows: Sequence[Mapping]) -> OcrItems:
    """OCR rows as the layers take them, in the order ``ocr_text`` reads them back."""
    ordered = sorted(ocr_rows, key=lambda r: r["line_index"])
    return [(list(r["box"]), r["text"], r["confidence"]) for r in ordered]


def stored_inputs(
    store: Store, poster_ids: Sequence[str], current: CurrentVersions
) -> dict[str, StoredInputs]:
    """The stored depth map and foreground mask paths and OCR lines of ``poster_ids`` at the
    ``current`` versions (two queries for all of them)."""
    if not poster_ids:
        return {}
    ids = list(poster_ids)
    paths = store.db.query(
        "SELECT 'depth', poster_id, depth_path FROM depth_maps WHERE model_version = ? AND poster_id IN ? "
        "UNION ALL SELECT 'mask', poster_id, mask_path FROM foreground_masks "
        "WHERE model_version = ? AND poster_id IN ?",
        [current.depth, ids, current.foreground, ids],
    )
    lines = store.db.query(
        "SELECT poster_id, box, text, confidence FROM ocr_text WHERE model_version = ? AND poster_id IN ? "
        "ORDER BY poster_id, line_index",
        [current.ocr, ids],
    )
    found = {(kind, pid): path for kind, pid, path in paths}
    ocr: dict[str, OcrItems] = {}
    for pid, box, text, confidence in lines:
        ocr.setdefault(pid, []).append((list(box), text, confidence))
    return {
        pid: StoredInputs(found.get(("depth", pid)), found.get(("mask", pid)), ocr.get(pid, []))
        for pid in ids
    }
