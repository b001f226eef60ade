"""PP-OCR (detection, orientation, recognition) through rapidocr on its OpenVINO engine.

rapidocr does the pre/post-processing (DB boxes, crops, CTC decoding); the three ONNX files are
the ones bundled in its wheel, selected by the registry (``ppocr-det``, ``ppocr-cls``,
``ppocr-rec``) and verified by sha256 before use, so a user-manifest version of any of them
is what runs and what ``OcrEngine.version`` names.

PP-OCR's recogniser often drops the space between words on wide display type (letter-spaced
titles, outlines, italics), so ``read`` re-inserts spaces from the line image itself: see
``word_gaps``. Its output is also NFKC-folded, because the Chinese dictionary of the model
contains full-width Latin forms (``Ｌ`` for ``L``).

``read`` is for one poster at a time (one engine on all cores, LATENCY). ``read_many`` is for
batches: a pool of engines, one OpenVINO stream each with a share of the cores, runs posters on
threads at once (OpenVINO releases the GIL while it infers), like the THROUGHPUT hint's streams.

Start-up: rapidocr's own OpenVINO session builds a ``Core`` per network and compiles it afresh
(nine compiles with ``read_many``'s pool); here the networks compile through ``models.runtime``
(``CompiledSession``), once per network for the whole pool, and the compile cache in the models
folder serves the next process: 0.4-0.6x of rapidocr's start-up (its own import, which parses
its YAML configs, stays 1-3 s on 2 busy cores).

Recognition: rapidocr pads every line of a poster to its widest line in one batch, but the
recogniser's cost grows with the padded width, and on OpenVINO's CPU plugin the first inference
of each new input shape costs ~100 ms more than the next ones. So a wide line is recognised
alone, padded only up to a step of 192 px, and narrow lines together at the minimum width
(``rec_batches``): half the padded input, a few dozen shapes that recur from poster to poster,
and titles read better (padding to the widest line made the recogniser drop spaces). It changes
values, so it is in the version (``+rec-192px-v1``). The detector's size is an option (``det_side``).

Precision: the networks compile at the CPU plugin's default (bf16 where the CPU has it, f32
elsewhere), and the detector and recogniser run as INT8 networks where their gates
passed (``models.precision``); the version names both per model (``runtime.versioned``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import queue
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import openvino as ov

from poster_assets.models import precision, runtime
from poster_assets.models.quantize import Int8Model
from poster_assets.models.registry import ModelSpec, get_spec
from poster_assets.models.weights import ModelUnavailableError, model_status, model_version
from poster_assets.settings import openvino_cache_dir
from poster_assets.storage.files import atomic_write_text

OCR_MODELS = ("ppocr-det", "ppocr-cls", "ppocr-rec")
# Recognition batches (``rec_batches``): at most this many narrow lines in one; a wide line padded
# up to a multiple of this width (a multiple of the 48 px line height, so rapidocr's width
# arithmetic is exact).
_REC_BATCH = 16
_REC_WIDTH_STEP = 192
# Input shapes whose prepared kernels and buffers a compiled network keeps (OpenVINO's CPU
# runtime cache; 5000 by default, and OCR's memory grew with every new shape: 2.5 GB after 48
# demo posters when each poster's padded batch was a new shape). The detector meets one shape
# per poster size and the recogniser a few dozen (``rec_batches``); 64 keeps the recent ones.
_SHAPES_KEPT = 64
# How lines are batched for recognition (padding changes the recogniser's output a little) and
# the post-processing of the recognised text: part of ``OcrEngine.version``, they change values.
_REC_VERSION = "rec-192px-v1"
_POST_VERSION = "nfkc+spaces-v1"
# The detector's short side: rapidocr scales smaller posters up to it (larger ones run at their own size,
# up to ``DET_MAX_SHORT_SIDE``). 736, rapidocr's, stays the default: on the 200 demo posters with IS-Net,
# 640 or 544 take 0.88 / 0.83 of the OCR time but read the title with twice the character errors (CER
# 0.013 vs 0.007; exact match 0.945 vs 0.950) and put a little less of its ink in the title layer
# (benchmarks/vision_quality.py --det-limit 736 640 544); scaling larger posters down to 736 too loses
# more (CER 0.018). Another side is an option, named in the version (``+det640``).
DET_SIDE_ENV = "POSTER_ASSETS_OCR_DET_SIDE"
# ... and its short side at most: rapidocr leaves a poster larger than ``det_side`` at its own
# size (up to 2000 px long), where a big scan's title letters outgrow what the detector finds.
# On 40 demo posters scaled to 2000x3000 (benchmarks/ocr_large_scans.py) the title was found
# among the lines in 29 at their own size, in 34 with the short side capped at 1024, in 0.84x
# the time and with 0.4 GB less memory; a cap of 736 found 37 but doubled the title CER at the
# demo's own sizes. Posters up to 1024 px on their short side (the whole demo corpus) are
# detected exactly as before.
DET_MAX_SHORT_SIDE = 1024
_DET_VERSION = f"det-max{DET_MAX_SHORT_SIDE}-v1"
DEFAULT_DET_SIDE = 736
# A gap between two characters is a word space when its empty ink columns exceed the line's
# median inter-letter gap by this fraction of the ink height. A space is ~0.45 cap heights in
# DejaVu; on the demo corpus (seed 0) letter gaps exceed the median by <= 0.12, word gaps mostly
# by > 0.3 (a few italic / outlined ones by 0.14); seed 1 gives the same result for 0.13 .. 0.18.
_SPACE_EXCESS = 0.15

_EngineKey = tuple[tuple[str, str], ...]
# ``read``'s engines (one stream on every core), compiled at the first ``read``.
_engines: dict[_EngineKey, tuple[Any, threading.Lock]] = {}
# ``read_many``'s pools: idle rapidocr instances (each used by one thread at a time).
_pools: dict[_EngineKey, queue.SimpleQueue[Any]] = {}
_pool_sizes: dict[_EngineKey, int] = {}
# The first engine compiled for a configuration, of either kind: what ``precisions`` and
# ``engines`` describe (both kinds compile the same networks in the same precision).
_first: dict[_EngineKey, Any] = {}
_engines_lock = threading.Lock()


@dataclass(frozen=True)
class OcrItem:
    """One text line: ``polygon`` is 4 [x, y] points (clockwise from top-left), ``order`` its
    position in reading order (lines top to bottom, left to right within a line)."""

    polygon: list[list[float]]
    text: str
    confidence: float
    order: int

    @property
    def box(self) -> list[int]:
        """Axis-aligned [x0, y0, x1, y1], x1/y1 exclusive."""
        pts = np.asarray(self.polygon, dtype=np.float64)
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
        return [int(x0), int(y0), int(x1) + 1, int(y1) + 1]


def _ocr_specs(models_dir: Path | None) -> tuple[tuple[ModelSpec, ...], tuple[str, ...]]:
    """The three active specs and their verified files; ``ModelUnavailableError`` otherwise."""
    specs = tuple(get_spec(n, models_dir) for n in OCR_MODELS)
    paths = []
    for spec in specs:
        status = model_status(spec, models_dir)
        if status.state != "present":
            raise ModelUnavailableError(status.reason)
        paths.append(str(status.path))
    return specs, tuple(paths)


# Which INT8 network replaces a float OCR model: "auto" asks ``precision.ocr_choices`` (the
# ones whose gate passed); a mapping names them exactly (gates and benchmarks), absent = float.
Int8Selection = Mapping[str, Int8Model | None] | Literal["auto"]


def det_side() -> int:
    """The detector's short side (see ``DEFAULT_DET_SIDE``): ``POSTER_ASSETS_OCR_DET_SIDE`` when
    set, else 736."""
    raw = os.environ.get(DET_SIDE_ENV, "").strip()
    if not raw:
        return DEFAULT_DET_SIDE
    if not raw.isdigit() or int(raw) < 32:
        raise ValueError(f"{DET_SIDE_ENV}={raw!r}: expected the detector's short side in pixels, e.g. 640")
    return int(raw)


def _version(
    specs: Sequence[ModelSpec],
    word_gaps: bool,
    precisions: Sequence[str],
    int8: Mapping[str, Int8Model | None],
    det: int = DEFAULT_DET_SIDE,
) -> str:
    models = ",".join(
        model_version(s) + runtime.precision_suffix(p, m.id if (m := int8.get(s.name)) else None)
        for s, p in zip(specs, precisions, strict=True)
    )
    det_tag = f"+det{det}" if det != DEFAULT_DET_SIDE else ""
    return f"ppocr:{models}+{_DET_VERSION}+{_REC_VERSION}{det_tag}" + (
        f"+{_POST_VERSION}" if word_gaps else ""
    )


def _selected(
    specs: Sequence[ModelSpec], models_dir: Path | None, int8: Int8Selection
) -> tuple[dict[str, Int8Model | None], list[str]]:
    """The INT8 network (or None) per OCR model, and what was decided and why."""
    if int8 == "auto":
        choices = precision.ocr_choices(specs, models_dir)
        return {n: c.model for n, c in choices.items()}, [c.reason for c in choices.values()]
    unknown = set(int8) - set(precision.OCR_INT8)
    if unknown:
        raise ValueError(f"no INT8 network is planned for {sorted(unknown)}; only for {precision.OCR_INT8}")
    return dict(int8), [f"{n}: INT8 {m.id} as asked" for n, m in int8.items() if m is not None]


def ocr_version(models_dir: Path | None = None, word_gaps: bool = True) -> str:
    """``OcrEngine(models_dir).version`` without compiling the models: for steps that only
    need to know which OCR values are current."""
    specs = _ocr_specs(models_dir)[0]
    chosen, _ = _selected(specs, models_dir, "auto")
    return _version(specs, word_gaps, [runtime.inference_precision()] * len(specs), chosen, det_side())


class OcrEngine:
    """Process-wide PP-OCR: constructing it is cheap, because the networks are compiled when
    first used (``read``: one engine on every core; ``read_many``: the pool) and shared by every
    instance with the same verified model files.

    ``read`` is thread-safe (rapidocr holds one infer request per model, so calls serialise).
    Raises ``ModelUnavailableError`` if a model file is missing or does not verify; OCR has no
    classical fallback.
    """

    def __init__(
        self,
        models_dir: Path | None = None,
        det_limit_side_len: int | None = None,
        word_gaps: bool = True,
        int8: Int8Selection = "auto",
    ) -> None:
        """``det_limit_side_len``: the detector's short side (default ``det_side()``).
        ``word_gaps=False`` returns rapidocr's text as recognised (for comparisons).
        ``int8``: ``"auto"`` runs the INT8 detector / recogniser where their gates passed;
        ``{}`` runs every model in float; ``{"ppocr-det": model}`` exactly that network."""
        self.word_gaps = word_gaps
        self.det_side = det_limit_side_len or det_side()
        self.specs, float_paths = _ocr_specs(models_dir)
        self.int8, self.precision_notes = _selected(self.specs, models_dir, int8)
        self.paths = tuple(
            str(m.xml) if (m := self.int8.get(s.name)) else p
            for s, p in zip(self.specs, float_paths, strict=True)
        )
        shas = tuple(f"int8-{m.id}" if (m := self.int8.get(s.name)) else s.sha256 for s in self.specs)
        # Resolved now (not when runtime.core first runs), as DenseEstimator places its cache.
        cache = Path(models_dir) / "ov_cache" if models_dir else openvino_cache_dir()
        self._networks = _Networks(self.paths, shas, str(cache))
        self._key = tuple(zip(self.paths, shas, strict=True)) + (("det_side", str(self.det_side)),)

    @functools.cached_property
    def precisions(self) -> dict[str, str]:
        """What the compiled networks compute in (the CPU plugin's default), read from them."""
        compiled = _compiled_models(self._described())
        return {
            spec.name: runtime.inference_precision(c) for spec, c in zip(self.specs, compiled, strict=True)
        }

    @property
    def version(self) -> str:
        """Names all three models and what computes them, e.g.
        ``ppocr:ppocr-det@PP-OCRv6-det-small+090f04abcd9d:int8-5f0c2e9a1b:bf16,…``."""
        precisions = list(self.precisions.values())
        return _version(self.specs, self.word_gaps, precisions, self.int8, self.det_side)

    @property
    def engines(self) -> dict[str, str]:
        """The inference session class behind each model (``CompiledSession``: OpenVINO, through
        the project's Core)."""
        rapid = self._described()
        return {
            "det": type(rapid.text_det.session).__name__,
            "cls": type(rapid.text_cls.session).__name__,
            "rec": type(rapid.text_rec.session).__name__,
        }

    def read(self, rgb: np.ndarray) -> list[OcrItem]:
        """Text lines in ``rgb`` (HxWx3 uint8), in reading order."""
        bgr = _to_bgr(rgb)
        rapid, lock = self._single()
        with lock:
            out = self._run(rapid, bgr)
        return _items(out)

    def read_many(self, images: Sequence[np.ndarray]) -> list[list[OcrItem]]:
        """``read`` of each image, in input order, with several posters in flight at once: the
        throughput path for batches. The same text and boxes as ``read`` (confidences may differ
        in the last digits: the pool's engines run on fewer threads each).

        Safe to call from several threads; they share the process-wide pool.
        """
        bgrs = [_to_bgr(rgb) for rgb in images]
        if not bgrs:
            return []
        idle, size = self._pool()

        def one(bgr: np.ndarray) -> list[OcrItem]:
            rapid = idle.get()
            try:
                return _items(self._run(rapid, bgr))
            finally:
                idle.put(rapid)

        if len(bgrs) == 1:
            return [one(bgrs[0])]
        with ThreadPoolExecutor(max_workers=min(size, len(bgrs)), thread_name_prefix="ocr") as ex:
            return list(ex.map(one, bgrs))

    def release(self) -> None:
        """Forget the compiled engines of this configuration, so memory goes when the last
        instance does: for throwaway configurations (an INT8 candidate under its gate)."""
        with _engines_lock:
            _engines.pop(self._key, None)
            _pools.pop(self._key, None)
            _pool_sizes.pop(self._key, None)
            _first.pop(self._key, None)

    def _described(self) -> Any:
        """The engine ``precisions`` and ``engines`` describe: the first compiled, else the pool's
        (what the extraction pass runs), compiled now."""
        if self._key not in _first:
            self._pool()
        return _first[self._key]

    def _single(self) -> tuple[Any, threading.Lock]:
        with _engines_lock:
            if self._key not in _engines:
                rapid = _build_rapidocr(self._networks, _compile(self._networks), self.det_side)
                _engines[self._key] = (rapid, threading.Lock())
                _first.setdefault(self._key, rapid)
        return _engines[self._key]

    def _pool(self) -> tuple[queue.SimpleQueue[Any], int]:
        with _engines_lock:
            if self._key not in _pools:
                streams, threads = pool_shape(os.cpu_count() or 1)
                compiled = _compile(self._networks, streams, threads)
                engines = [_build_rapidocr(self._networks, compiled, self.det_side) for _ in range(streams)]
                idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
                for rapid in engines:
                    idle.put(rapid)
                _pools[self._key], _pool_sizes[self._key] = idle, streams
                _first.setdefault(self._key, engines[0])
        return _pools[self._key], _pool_sizes[self._key]

    def _run(self, rapid: Any, bgr: np.ndarray) -> Any:
        # rapidocr's own __call__ split in its steps (3.10.0), to see the recogniser's per-character
        # CTC positions and line crops (``return_word_box``) before its output is assembled.
        img, op_record = rapid.preprocess_img(bgr)
        det_res, cls_res, rec_res, crops = _ocr_steps(rapid, img, op_record)
        if rec_res.txts is not None and rec_res.word_results is not None:
            txts = list(rec_res.txts)
            if self.word_gaps:
                txts = [
                    insert_word_gaps(t, info.word_cols, info.line_txt_len, crop)
                    for t, info, crop in zip(txts, rec_res.word_results, rec_res.imgs, strict=True)
                ]
            rec_res.txts = tuple(unicodedata.normalize("NFKC", t) if self.word_gaps else t for t in txts)
            # None: skip rapidocr's word boxes, which are not used.
            rec_res.word_results = tuple(None for _ in rec_res.word_results)
        return rapid.build_final_output(bgr, det_res, cls_res, rec_res, crops, op_record)


def _compiled_models(rapid: Any) -> list[Any]:
    """det, cls, rec as compiled by rapidocr (its OpenVINO session keeps only the request)."""
    sessions = (rapid.text_det.session, rapid.text_cls.session, rapid.text_rec.session)
    return [s.session.get_compiled_model() for s in sessions]


def release_engines() -> None:
    """Forget every configuration's compiled engines (``OcrEngine.release`` of each)."""
    with _engines_lock:
        _engines.clear()
        _pools.clear()
        _pool_sizes.clear()
        _first.clear()


def pool_shape(cpus: int) -> tuple[int, int]:
    """(engines, threads per engine) of ``read_many``'s pool on ``cpus`` cores: about four cores
    each (PP-OCR's small networks stop scaling beyond a few threads), one engine below eight.
    Each engine holds the detector's buffers for its own posters (~0.45 GB at the demo's sizes),
    and in the extraction pass the depth and foreground networks run beside OCR and fill the gaps
    a second engine would: on 2 cores one engine of 2 threads made the pass 2 % slower and its
    peak 0.45 GB smaller (1.58 vs 2.04 GB, 32 demo posters, IS-Net INT8) than two of one."""
    engines = max(1, min(8, cpus // 4))
    return engines, max(1, cpus // engines)


def _to_bgr(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    return np.ascontiguousarray(rgb[..., ::-1])  # rapidocr takes arrays as BGR (cv2 order)


def _items(out: Any) -> list[OcrItem]:
    boxes, txts, scores = (
        getattr(out, "boxes", None),
        getattr(out, "txts", None),
        getattr(out, "scores", None),
    )
    if boxes is None or txts is None or scores is None:
        return []
    polys = [np.asarray(b, dtype=np.float64).reshape(4, 2) for b in boxes]
    order = reading_order(polys)
    items = [
        OcrItem(
            polygon=[[round(float(x), 1), round(float(y), 1)] for x, y in polys[i]],
            text=str(txts[i]),
            confidence=float(scores[i]),
            order=rank,
        )
        for rank, i in enumerate(order)
    ]
    return items


def insert_word_gaps(text: str, word_cols: list[list[int]], line_frames: float, crop: np.ndarray) -> str:
    """``text`` with a space between two characters whose ink gap is a word space.

    ``word_cols`` are the CTC frame of each non-space character (rapidocr's ``WordInfo``),
    ``line_frames`` the number of frames the line spans and ``crop`` the line image the
    recogniser saw. Where the text ink is (a colour cluster, see ``_ink_mask``), the columns
    between two characters' frames hold some empty columns; a count above the line's
    median by ``_SPACE_EXCESS`` ink heights, where the CTC frame step is also wider than the
    line's median step, is a word space. Relative to the median, so
    letter-spaced titles do not split into letters; italics are deskewed first. Ideographs
    never get spaces.
    """
    frames = [c for word in word_cols for c in word]
    chars = [(i, ch) for i, ch in enumerate(text) if not ch.isspace()]
    if len(chars) < 3 or len(frames) != len(chars) or line_frames <= 0 or crop.size == 0:
        return text
    mask = _deskew(_ink_mask(crop))
    rows = mask.sum(axis=1)
    inked = np.flatnonzero(rows > 0.1 * rows.max()) if rows.max() > 0 else []
    if len(inked) == 0:
        return text
    ink_h = float(inked[-1] - inked[0] + 1)
    # Empty columns counted, not the longest empty run: a thin stroke of the background that
    # the colour clustering kept (a pole, a star) must not cut a word space in two.
    empty = mask[inked[0] : inked[-1] + 1].sum(axis=0) <= 0.05 * ink_h
    xs = (np.asarray(frames, np.float64) + 0.5) * crop.shape[1] / line_frames
    gaps = np.array([empty[int(a) : int(np.ceil(b))].sum() for a, b in zip(xs, xs[1:], strict=False)])
    excess = (gaps - np.median(gaps)) / ink_h
    # The recogniser's own evidence too: a space widens the CTC frame step between the two
    # characters beyond the line's usual step (this alone is too coarse: 1 frame = 8 px at 48).
    steps = np.diff(frames)
    wider = steps >= np.median(steps) + 1
    out, prev = [], -1
    for k, (i, ch) in enumerate(chars):
        if k > 0:
            already = i - prev > 1  # the recogniser put a space here itself
            gap = excess[k - 1] > _SPACE_EXCESS and wider[k - 1]
            if already or (gap and not (_wide(text[prev]) or _wide(ch))):
                out.append(" ")
        out.append(ch)
        prev = i
    return "".join(out)


def _ink_mask(crop: np.ndarray) -> np.ndarray:
    """uint8 HxW, 1 on the text's colour: of three Lab colour clusters, the one least present
    on the crop's border relative to its middle rows (outlines, shadows and background are the
    other two, or share the border)."""
    h, w = crop.shape[:2]
    lab = cv2.cvtColor(crop, cv2.COLOR_BGR2Lab).reshape(-1, 3).astype(np.float32)
    k = 3
    if len(lab) < k:
        return np.zeros((h, w), np.uint8)
    cv2.setRNGSeed(0)  # k-means++ seeding: same crop, same text
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    _, labels, _ = cv2.kmeans(lab, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    ids = labels.reshape(h, w)
    border = np.concatenate([ids[0], ids[-1], ids[:, 0], ids[:, -1]])
    middle = ids[h // 4 : max(h // 4 + 1, 3 * h // 4)]
    score = [(border == c).mean() / max(float((middle == c).mean()), 1e-6) for c in range(k)]
    ink = (ids == int(np.argmin(score))).astype(np.uint8)
    return cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))  # drop specks


def _deskew(mask: np.ndarray) -> np.ndarray:
    """The mask sheared upright: of a few italic slants, the one leaving most empty columns."""
    h, w = mask.shape
    best, best_empty = mask, int((mask.sum(axis=0) == 0).sum())
    for slant in (0.1, 0.2, 0.3):
        shear = np.float32([[1, slant, -slant * h / 2], [0, 1, 0]])
        sheared = cv2.warpAffine(mask, shear, (w, h), flags=cv2.INTER_NEAREST)
        empty = int((sheared.sum(axis=0) == 0).sum())
        if empty > best_empty:
            best, best_empty = sheared, empty
    return best


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def reading_order(polygons: list[np.ndarray]) -> list[int]:
    """Indices of ``polygons`` in reading order: group boxes into lines (a box joins a line when
    its vertical centre lies inside the line's vertical extent), lines top to bottom, boxes
    left to right within a line."""
    boxes = [(p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()) for p in polygons]
    lines: list[list[int]] = []
    extents: list[list[float]] = []  # [top, bottom] per line
    for i in sorted(range(len(boxes)), key=lambda k: (boxes[k][1] + boxes[k][3]) / 2):
        _, y0, _, y1 = boxes[i]
        cy = (y0 + y1) / 2
        for line, ext in zip(lines, extents, strict=True):
            if ext[0] <= cy <= ext[1]:
                line.append(i)
                ext[0], ext[1] = min(ext[0], y0), max(ext[1], y1)
                break
        else:
            lines.append([i])
            extents.append([y0, y1])
    ranked = sorted(zip(extents, lines, strict=True), key=lambda el: el[0][0])
    return [i for _, line in ranked for i in sorted(line, key=lambda k: boxes[k][0])]


@dataclass(frozen=True)
class _Networks:
    """The det, cls and rec files an engine compiles, each with its identity (sha256, or the
    INT8 network's id) and the compile cache folder."""

    paths: tuple[str, ...]
    keys: tuple[str, ...]
    cache_dir: str


def _compile(networks: _Networks, streams: int | None = None, threads: int = 1) -> dict[str, Any]:
    """Each network compiled through ``runtime`` (the compile cache), by path: for one engine
    (LATENCY: one stream on all cores), or for ``read_many``'s pool of ``streams`` engines of
    ``threads`` threads each: one compiled model per network (one compile, not one per engine)
    whose streams run the engines' requests side by side."""
    # rapidocr's extension modules (shapely, pyclipper) load before OpenVINO starts its threads:
    # a dlopen while they ran once hung an import here for good.
    import rapidocr.main  # noqa: F401

    _init_tensor_bindings()
    hint, properties = "LATENCY", {"CPU_RUNTIME_CACHE_CAPACITY": _SHAPES_KEPT}
    if streams is not None:
        hint = "THROUGHPUT"
        properties |= {"NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": streams * threads}
    return {
        path: runtime.compile_model(path, hint=hint, cache_dir=networks.cache_dir, **properties)
        for path in networks.paths
    }


@functools.cache
def _init_tensor_bindings() -> None:
    """Run OpenVINO's numpy <-> tensor conversions once on one thread. Their first call fills
    C++ function statics and runs Python code meanwhile; a second thread entering the same call
    (two pool engines starting on their first posters) then waits for that static while holding
    the GIL the first one needs: ``read_many`` hung now and then on its first chunk."""
    np.asarray(ov.Tensor(np.zeros((1, 1), np.float32)).data)


def _build_rapidocr(networks: _Networks, compiled: Mapping[str, Any], det_side: int) -> Any:
    """A rapidocr whose sessions are infer requests of ``compiled`` (``_compile``)."""
    from rapidocr import EngineType, RapidOCR

    det, cls, rec = networks.paths
    params: dict[str, Any] = {
        "Global.log_level": "warning",
        "Det.engine_type": EngineType.OPENVINO,
        "Cls.engine_type": EngineType.OPENVINO,
        "Rec.engine_type": EngineType.OPENVINO,
        "Det.model_path": det,
        "Cls.model_path": cls,
        "Rec.model_path": rec,
        "Rec.rec_batch_num": _REC_BATCH,  # unused: ``_recognize`` makes the batches
        # Per-character CTC positions for ``insert_word_gaps`` (rapidocr's word boxes are skipped).
        "Global.return_word_box": True,
        "Det.limit_side_len": det_side,
    }
    rapid = RapidOCR(params=params)
    # rapidocr loads its networks lazily on first use; load them now so the first poster is not
    # slow and so ``engines`` can show what actually runs.
    with _compiled_sessions(networks, compiled):
        rapid._load_det_model()
        rapid._load_cls_model()
        rapid._load_rec_model()
    _float32_detector_input(rapid.text_det)
    return rapid


def _float32_detector_input(det: Any) -> None:
    """Have rapidocr's detector prepare its input with ``det_input`` (for its default mean and
    std of 0.5, with which the two agree), at ``det_size``."""
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    def preprocess() -> Callable[[np.ndarray], np.ndarray | None]:
        pre = DetPreProcess(det.limit_side_len, det.limit_type, det.mean, det.std)
        pre.resize = functools.partial(det_resize, side=det.limit_side_len)
        if not (np.all(pre.mean == 0.5) and np.all(pre.std == 0.5)):
            return pre
        return functools.partial(det_input, pre)

    det.get_preprocess = preprocess  # rapidocr asks for it per image


def det_scale(height: int, width: int, side: int, most: int = DET_MAX_SHORT_SIDE) -> float:
    """How the detector scales an image: its short side up to ``side`` when smaller, down to
    ``most`` (at least ``side``) when larger."""
    short = min(height, width)
    return min(max(short, side), max(most, side)) / short


def det_resize(img: np.ndarray, side: int, most: int | None = None) -> np.ndarray:
    """``img`` as the detector sees it: scaled by ``det_scale`` (``most``: DET_MAX_SHORT_SIDE),
    each side rounded to a multiple of 32 as rapidocr rounds it (the same pixels as rapidocr's
    own resize below the cap); area interpolation when shrinking, as for any downscale here."""
    scale = det_scale(img.shape[0], img.shape[1], side, DET_MAX_SHORT_SIDE if most is None else most)
    h, w = (max(32, round(int(n * scale) / 32) * 32) for n in img.shape[:2])
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def det_input(pre: Any, img: np.ndarray) -> np.ndarray | None:
    """rapidocr's detector input (``DetPreProcess``: resized to multiples of 32, ``(x / 255 - 0.5)
    / 0.5``, NCHW) computed in float32 where rapidocr goes through float64: the same values
    (subtracting 0.5 rounds once either way and dividing by 0.5 is exact) in a quarter of the
    time (~45 -> ~11 ms a poster)."""
    resized = pre.resize(img)
    if resized is None:
        return None
    x = resized.astype(np.float32)
    x *= pre.scale
    x -= 0.5
    x *= 2.0
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


# --- networks compiled through models.runtime --------------------------------------------------
_sessions_lock = threading.Lock()


@contextlib.contextmanager
def _compiled_sessions(networks: _Networks, compiled: Mapping[str, Any]) -> Iterator[None]:
    """While rapidocr loads its networks, the session class it picks for OpenVINO is
    ``CompiledSession`` over ``compiled`` (rapidocr has no hook for a session of one's own; its
    engine lookup reads this module attribute each time)."""
    import rapidocr.inference_engine.openvino as engine

    def session(cfg: Any) -> CompiledSession:
        i = networks.paths.index(str(cfg.model_path))
        path, key = networks.paths[i], networks.keys[i]
        return CompiledSession(compiled[path], path, OCR_MODELS[i], key, networks.cache_dir)

    with _sessions_lock:
        original = engine.OpenVINOInferSession
        engine.OpenVINOInferSession = session
        try:
            yield
        finally:
            engine.OpenVINOInferSession = original


class CompiledSession:
    """What rapidocr asks of an inference session (``session(x)``, and of the recogniser's its
    character list): an infer request of a network compiled by ``runtime.compile_model``."""

    def __init__(self, compiled: Any, path: str, name: str, key: str, cache_dir: str) -> None:
        self.path, self.name, self._key, self._cache_dir = path, name, key, cache_dir
        self.session = compiled.create_infer_request()  # rapidocr's name for it

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        self.session.infer(inputs=[x])
        out = self.session.get_output_tensor().data
        if (profile := _profile) is not None:
            profile.add(self.name, x.shape, time.perf_counter() - t0)
        return out

    def have_key(self, key: str = "character") -> bool:
        return key == "character" and bool(self.get_character_list())

    def get_character_list(self, key: str = "character") -> list[str]:
        return list(_characters(self.path, self._key, self._cache_dir)) if key == "character" else []


@functools.cache
def _characters(path: str, key: str, cache_dir: str) -> tuple[str, ...]:
    """The recogniser's dictionary, which its file carries in its metadata. Kept beside the
    compile cache under the network's identity: reading it from the file means reading the whole
    network (0.1-0.4 s), which a network loaded from the cache otherwise never does."""
    kept = Path(cache_dir) / f"ppocr-characters-{key[:24]}.txt"
    if kept.is_file():
        return tuple(kept.read_text(encoding="utf-8").split("\n"))
    info = runtime.core(cache_dir).read_model(path).get_rt_info()
    if "framework" not in info or "character" not in info["framework"]:
        return ()
    chars = str(info["framework"]["character"].value).splitlines()
    with contextlib.suppress(OSError):  # a read-only cache: read from the network next time too
        atomic_write_text(kept, "\n".join(chars))
    return tuple(chars)


# --- the OCR steps, recognition in width buckets -----------------------------------------------
def _ocr_steps(rapid: Any, img: np.ndarray, op_record: dict[str, Any]) -> tuple[Any, Any, Any, list]:
    """rapidocr's ``run_ocr_steps`` (detection, orientation, recognition, as its defaults run
    them) with the lines recognised in width buckets."""
    from rapidocr.ch_ppocr_cls import TextClsOutput
    from rapidocr.ch_ppocr_det import TextDetOutput
    from rapidocr.ch_ppocr_rec import TextRecOutput
    from rapidocr.main import RapidOCRError

    try:
        crops, det_res = rapid.detect_and_crop(img, op_record)
    except RapidOCRError:  # no text found
        return TextDetOutput(), TextClsOutput(), TextRecOutput(), []
    try:
        lines, cls_res = rapid.cls_and_rotate(crops)
    except RapidOCRError:
        return det_res, TextClsOutput(), TextRecOutput(), []
    return det_res, cls_res, _recognize(rapid, lines), crops


def _recognize(rapid: Any, lines: list[np.ndarray]) -> Any:
    """rapidocr's recogniser (its resizing, network and CTC decoding) over ``lines`` in
    ``rec_batches``; the output in the order of ``lines``, as rapidocr gives it."""
    from rapidocr.ch_ppocr_rec import TextRecOutput

    rec = rapid._load_rec_model()
    _, height, min_width = rec.rec_image_shape
    ratios = [line.shape[1] / line.shape[0] for line in lines]
    txts, scores, words = [""] * len(lines), [0.0] * len(lines), [None] * len(lines)
    for batch, width in rec_batches([math.ceil(height * r) for r in ratios], min_width):
        padded = width / height  # rapidocr's "max_wh_ratio": every line of the batch is padded to it
        x = np.stack([rec.resize_norm_img(lines[i], padded) for i in batch])  # float32
        found, word_info = rec.postprocess_op(
            rec.session(x),
            rapid.return_word_box,
            wh_ratio_list=[ratios[i] for i in batch],
            max_wh_ratio=padded,
        )
        for k, i in enumerate(batch):
            (txts[i], scores[i]), words[i] = found[k], word_info[k] if rapid.return_word_box else None
    return TextRecOutput(imgs=lines, txts=tuple(txts), scores=tuple(scores), word_results=tuple(words))


def rec_batches(
    widths: Sequence[int], min_width: int, most: int = _REC_BATCH, step: int = _REC_WIDTH_STEP
) -> list[tuple[list[int], int]]:
    """Recognition batches for lines ``widths`` px wide at the recogniser's height: (line indices,
    the width they are padded to). Lines no wider than ``min_width`` (the least any line is padded
    to) share batches of at most ``most``; each wider line goes alone, padded up to the next
    multiple of ``step``. Input shapes recur from poster to poster, so OpenVINO prepares each once."""
    narrow = [i for i, w in enumerate(widths) if w <= min_width]
    batches = [(narrow[k : k + most], min_width) for k in range(0, len(narrow), most)]
    return batches + [([i], -(-w // step) * step) for i, w in enumerate(widths) if w > min_width]


# --- profiling (benchmarks) ---------------------------------------------------------------------
@dataclass
class InferenceProfile:
    """Inferences of the OCR networks while ``profile_inference`` is active: per (model, input
    shape), [calls, seconds]."""

    calls: dict[tuple[str, tuple[int, ...]], list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, shape: tuple[int, ...], seconds: float) -> None:
        with self._lock:
            entry = self.calls.setdefault((name, tuple(int(d) for d in shape)), [0, 0.0])
            entry[0] += 1
            entry[1] += seconds

    def seconds(self, name: str) -> float:
        return sum(s for (n, _), (_, s) in self.calls.items() if n == name)


_profile: InferenceProfile | None = None


@contextlib.contextmanager
def profile_inference() -> Iterator[InferenceProfile]:
    """Record every OCR inference of this process (all engines) while the block runs."""
    global _profile
    _profile = InferenceProfile()
    try:
        yield _profile
    finally:
        _profile = None
