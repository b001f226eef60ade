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

Precision: rapidocr compiles each network at the CPU plugin's default (bf16 where the CPU has
it, f32 elsewhere), and the detector and recogniser run as INT8 networks where their gates
passed (``models.precision``); the version names both per model (``runtime.versioned``).
"""

from __future__ import annotations

import os
import queue
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from poster_assets.models import precision, runtime
from poster_assets.models.quantize import Int8Model
from poster_assets.models.registry import ModelSpec, get_spec
from poster_assets.models.weights import ModelUnavailableError, model_status, model_version

OCR_MODELS = ("ppocr-det", "ppocr-cls", "ppocr-rec")
# Recognition crops are batched by width; rapidocr's default of 6 leaves most of a poster's
# lines in separate inferences.
_REC_BATCH = 16
# Post-processing of the recognised text; part of ``OcrEngine.version`` because it changes values.
_POST_VERSION = "nfkc+spaces-v1"
# A gap between two characters is a word space when its empty ink columns exceed the line's
# median inter-letter gap by this fraction of the ink height. A space is ~0.45 cap heights in
# DejaVu; on the demo corpus (seed 0) letter gaps exceed the median by <= 0.12, word gaps mostly
# by > 0.3 (a few italic / outlined ones by 0.14); seed 1 gives the same result for 0.13 .. 0.18.
_SPACE_EXCESS = 0.15

_EngineKey = tuple[tuple[str, str], ...]
_engines: dict[_EngineKey, tuple[Any, threading.Lock]] = {}
# ``read_many``'s pools: idle rapidocr instances (each used by one thread at a time).
_pools: dict[_EngineKey, queue.SimpleQueue[Any]] = {}
_pool_sizes: dict[_EngineKey, int] = {}
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


def _version(
    specs: Sequence[ModelSpec],
    word_gaps: bool,
    precisions: Sequence[str],
    int8: Mapping[str, Int8Model | None],
) -> str:
    models = ",".join(
        model_version(s) + runtime.precision_suffix(p, m.id if (m := int8.get(s.name)) else None)
        for s, p in zip(specs, precisions, strict=True)
    )
    return f"ppocr:{models}+{_POST_VERSION}" if word_gaps else f"ppocr:{models}"


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
    return _version(specs, word_gaps, [runtime.inference_precision()] * len(specs), chosen)


class OcrEngine:
    """Process-wide PP-OCR: constructing it is cheap after the first time, because the
    compiled rapidocr engine is shared by every instance with the same verified model files.

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
        """``word_gaps=False`` returns rapidocr's text as recognised (for comparisons).
        ``int8``: ``"auto"`` runs the INT8 detector / recogniser where their gates passed;
        ``{}`` runs every model in float; ``{"ppocr-det": model}`` exactly that network."""
        self.word_gaps = word_gaps
        self.specs, float_paths = _ocr_specs(models_dir)
        self.int8, self.precision_notes = _selected(self.specs, models_dir, int8)
        self.paths = tuple(
            str(m.xml) if (m := self.int8.get(s.name)) else p
            for s, p in zip(self.specs, float_paths, strict=True)
        )
        shas = tuple(f"int8-{m.id}" if (m := self.int8.get(s.name)) else s.sha256 for s in self.specs)
        key = tuple(zip(self.paths, shas, strict=True)) + (("det_limit", str(det_limit_side_len)),)
        with _engines_lock:
            if key not in _engines:
                _engines[key] = (_build_rapidocr(self.paths, det_limit_side_len), threading.Lock())
        self._rapid, self._lock = _engines[key]
        self._key, self._det_limit = key, det_limit_side_len
        # What the compiled networks compute in: rapidocr compiles at the CPU's default.
        self.precisions = {
            spec.name: runtime.inference_precision(compiled)
            for spec, compiled in zip(self.specs, _compiled_models(self._rapid), strict=True)
        }

    @property
    def version(self) -> str:
        """Names all three models and what computes them, e.g.
        ``ppocr:ppocr-det@PP-OCRv6-det-small+090f04abcd9d:int8-5f0c2e9a1b:bf16,…``."""
        return _version(self.specs, self.word_gaps, list(self.precisions.values()), self.int8)

    @property
    def engines(self) -> dict[str, str]:
        """The inference session class behind each model (proof that OpenVINO runs)."""
        rapid = self._rapid
        return {
            "det": type(rapid.text_det.session).__name__,
            "cls": type(rapid.text_cls.session).__name__,
            "rec": type(rapid.text_rec.session).__name__,
        }

    def read(self, rgb: np.ndarray) -> list[OcrItem]:
        """Text lines in ``rgb`` (HxWx3 uint8), in reading order."""
        bgr = _to_bgr(rgb)
        with self._lock:
            out = self._run(self._rapid, bgr)
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

    def _pool(self) -> tuple[queue.SimpleQueue[Any], int]:
        with _engines_lock:
            if self._key not in _pools:
                streams, threads = pool_shape(os.cpu_count() or 1)
                idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
                for _ in range(streams):
                    idle.put(_build_rapidocr(self.paths, self._det_limit, threads=threads))
                _pools[self._key], _pool_sizes[self._key] = idle, streams
        return _pools[self._key], _pool_sizes[self._key]

    def _run(self, rapid: Any, bgr: np.ndarray) -> Any:
        # rapidocr's own __call__ split in its steps (3.10.0), to see the recogniser's per-character
        # CTC positions and line crops (``return_word_box``) before its output is assembled.
        img, op_record = rapid.preprocess_img(bgr)
        det_res, cls_res, rec_res, crops = rapid.run_ocr_steps(img, op_record)
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


def pool_shape(cpus: int) -> tuple[int, int]:
    """(engines, threads per engine) of ``read_many``'s pool on ``cpus`` cores: at least two
    engines, so one poster's Python pre/post-processing overlaps another's inference; about four
    cores each on big machines (PP-OCR's small networks stop scaling beyond a few threads)."""
    engines = max(2, min(8, cpus // 4))
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


def _build_rapidocr(
    paths: tuple[str, ...], det_limit_side_len: int | None, threads: int | None = None
) -> Any:
    """A compiled rapidocr; ``threads``: one OpenVINO stream of that many threads (a pool
    member), else one stream on all cores (LATENCY)."""
    from rapidocr import EngineType, RapidOCR

    det, cls, rec = paths
    params: dict[str, Any] = {
        "Global.log_level": "warning",
        "Det.engine_type": EngineType.OPENVINO,
        "Cls.engine_type": EngineType.OPENVINO,
        "Rec.engine_type": EngineType.OPENVINO,
        "Det.model_path": det,
        "Cls.model_path": cls,
        "Rec.model_path": rec,
        "Rec.rec_batch_num": _REC_BATCH,
        # Per-character CTC positions for ``insert_word_gaps`` (rapidocr's word boxes are skipped).
        "Global.return_word_box": True,
        # One request at a time per model: latency is what a sequential pipeline waits on.
        "EngineConfig.openvino.performance_hint": "LATENCY",
    }
    if threads is not None:
        params["EngineConfig.openvino.inference_num_threads"] = threads
        # Unpinned: OpenVINO would pin every one-thread engine of the pool to the same core.
        params["EngineConfig.openvino.enable_cpu_pinning"] = False
    if det_limit_side_len is not None:
        params["Det.limit_side_len"] = det_limit_side_len
    rapid = RapidOCR(params=params)
    # rapidocr compiles lazily on first use; compile now so the first poster is not slow and
    # so ``engines`` can show what actually runs.
    rapid._load_det_model()
    rapid._load_cls_model()
    rapid._load_rec_model()
    return rapid
