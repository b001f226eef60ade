"""PP-OCR (detection, orientation, recognition) through rapidocr on its OpenVINO engine.

rapidocr does the pre/post-processing (DB boxes, crops, CTC decoding); the three ONNX files are
the ones bundled in its wheel, selected by the registry (``ppocr-det``, ``ppocr-cls``,
``ppocr-rec``) and verified by sha256 before use, so a user-manifest version of any of them
is what runs and what ``OcrEngine.version`` names.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poster_assets.models.registry import ModelSpec, get_spec
from poster_assets.models.store import ModelUnavailableError, model_status, model_version

OCR_MODELS = ("ppocr-det", "ppocr-cls", "ppocr-rec")
# Recognition crops are batched by width; rapidocr's default of 6 leaves most of a poster's
# lines in separate inferences.
_REC_BATCH = 16

_engines: dict[tuple[tuple[str, str], ...], tuple[Any, threading.Lock]] = {}
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


class OcrEngine:
    """Process-wide PP-OCR: constructing it is cheap after the first time, because the
    compiled rapidocr engine is shared by every instance with the same verified model files.

    ``read`` is thread-safe (rapidocr holds one infer request per model, so calls serialise).
    Raises ``ModelUnavailableError`` if a model file is missing or does not verify; OCR has no
    classical fallback.
    """

    def __init__(self, models_dir: Path | None = None, det_limit_side_len: int | None = None) -> None:
        self.specs: tuple[ModelSpec, ...] = tuple(get_spec(n, models_dir) for n in OCR_MODELS)
        paths = []
        for spec in self.specs:
            status = model_status(spec, models_dir)
            if status.state != "present":
                raise ModelUnavailableError(status.reason)
            paths.append(str(status.path))
        self.paths: tuple[str, ...] = tuple(paths)
        key = tuple(zip(self.paths, (s.sha256 for s in self.specs), strict=True)) + (
            ("det_limit", str(det_limit_side_len)),
        )
        with _engines_lock:
            if key not in _engines:
                _engines[key] = (_build_rapidocr(self.paths, det_limit_side_len), threading.Lock())
        self._rapid, self._lock = _engines[key]

    @property
    def version(self) -> str:
        """Names all three models, e.g. ``ppocr:ppocr-det@PP-OCRv6-det-small+090f04abcd9d,…``."""
        return "ppocr:" + ",".join(model_version(s) for s in self.specs)

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
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
        bgr = np.ascontiguousarray(rgb[..., ::-1])  # rapidocr takes arrays as BGR (cv2 order)
        with self._lock:
            out = self._rapid(bgr)
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


def _build_rapidocr(paths: tuple[str, ...], det_limit_side_len: int | None) -> Any:
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
        # One request at a time per model: latency is what a sequential pipeline waits on.
        "EngineConfig.openvino.performance_hint": "LATENCY",
    }
    if det_limit_side_len is not None:
        params["Det.limit_side_len"] = det_limit_side_len
    rapid = RapidOCR(params=params)
    # rapidocr compiles lazily on first use; compile now so the first poster is not slow and
    # so ``engines`` can show what actually runs.
    rapid._load_det_model()
    rapid._load_cls_model()
    rapid._load_rec_model()
    return rapid
