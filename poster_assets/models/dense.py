"""Shared machinery of the image-to-map estimators (depth, foreground): pick the neural path or
the classical fallback from the registry, and run the network over lists of images with an
OpenVINO ``AsyncInferQueue`` so pre-processing of the next image overlaps inference of the
previous ones and several requests run in parallel streams (THROUGHPUT hint)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from poster_assets.models import runtime
from poster_assets.models.registry import ModelSpec, get_spec
from poster_assets.models.weights import model_status, model_version

Boxes = Sequence[Sequence[int]]


@functools.cache
def _compiled(
    path: str,
    sha256: str,
    hint: str,
    cache_dir: str | None,
    precision: str | None,
    run_size: tuple[int, int] | None = None,
) -> ov.CompiledModel:
    # Keyed by sha256 too, so a replaced file is compiled afresh in the same process.
    config = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
    model: str | ov.Model = path
    if run_size is not None:
        # Run at another size than exported: resizes rewritten to scales, then reshaped.
        from poster_assets.models.onnx_resize import read_resized  # lazy: imports onnx

        model = read_resized(path, run_size, cache_dir)
    return runtime.compile_model(model, hint=hint, cache_dir=cache_dir, **config)


class DenseEstimator:
    """Base of ``DepthEstimator`` and ``ForegroundSegmenter``: subclasses give the model name,
    the fallback function and the pre/post-processing."""

    model_name: str = ""

    def __init__(
        self,
        models_dir: Path | None = None,
        model: str | None = None,
        hint: str = "THROUGHPUT",
        precision: str | None = None,
    ) -> None:
        """``precision``: OpenVINO's ``INFERENCE_PRECISION_HINT`` (``"f32"`` for exact
        results); by default the CPU plugin picks bf16 where the CPU has it (about 2 decimal
        digits on these normalised maps, and faster)."""
        self.spec: ModelSpec = get_spec(model or self.model_name, models_dir)
        status = model_status(self.spec, models_dir)
        self.reason = status.reason
        self._compiled: ov.CompiledModel | None = None
        self._queue: ov.AsyncInferQueue | None = None
        self._lock = threading.Lock()
        if status.state != "present":
            return
        cache_dir = str(Path(models_dir) / "ov_cache") if models_dir else None
        run_size = self.spec.input.run_size
        try:
            compiled = _compiled(str(status.path), self.spec.sha256, hint, cache_dir, precision, run_size)
        except (RuntimeError, ValueError) as err:
            if run_size is None:
                raise
            # A size the network cannot be reshaped to (its skip connections no longer align).
            h, w = run_size
            self.reason = f"{self.spec.name}: cannot run at {h}x{w} ({err}); using {self.spec.fallback}"
            return
        problem = _contract_problem(compiled, self.spec)
        if problem:
            self.reason = f"{self.spec.name}: {problem}; refusing the model, using {self.spec.fallback}"
            return
        self._compiled = compiled

    @property
    def neural(self) -> bool:
        """True when the network runs, False when the classical fallback does."""
        return self._compiled is not None

    @property
    def version(self) -> str:
        """``model_version`` of the network, or the fallback's version string."""
        return model_version(self.spec) if self.neural else str(self.spec.fallback)

    def predict(self, rgb: np.ndarray, text_boxes: Boxes | None = None) -> np.ndarray:
        return self.predict_batch([rgb], [text_boxes] if text_boxes is not None else None)[0]

    def predict_batch(
        self, images: Sequence[np.ndarray], text_boxes: Sequence[Boxes | None] | None = None
    ) -> list[np.ndarray]:
        """One float32 HxW map in [0, 1] per RGB image. ``text_boxes`` (OCR boxes per image,
        [x0, y0, x1, y1]) are used by the classical fallback only."""
        if text_boxes is not None and len(text_boxes) != len(images):
            raise ValueError(f"{len(images)} images but {len(text_boxes)} text box lists")
        for img in images:
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"expected HxWx3 uint8 RGB images, got {img.shape} {img.dtype}")
        if not self.neural:
            fallback = self._fallback()
            boxes = text_boxes or [None] * len(images)
            return [
                np.asarray(fallback(img, list(b or [])), dtype=np.float32)
                for img, b in zip(images, boxes, strict=True)
            ]
        return self._infer(images)

    def _infer(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        assert self._compiled is not None
        results: list[np.ndarray | None] = [None] * len(images)
        out_index = self.spec.output.index

        def done(request: ov.InferRequest, i: int) -> None:
            raw = request.get_output_tensor(out_index).data
            h, w = images[i].shape[:2]
            results[i] = self._postprocess(np.array(raw, dtype=np.float32), h, w)

        with self._lock:  # one queue per estimator; concurrent callers take turns
            if self._queue is None:
                self._queue = ov.AsyncInferQueue(self._compiled)
            self._queue.set_callback(done)
            for i, img in enumerate(images):
                self._queue.start_async({0: self._preprocess(img)}, userdata=i)
            self._queue.wait_all()
        if any(r is None for r in results):
            raise RuntimeError(f"{self.spec.name}: inference produced no output for some images")
        return results  # type: ignore[return-value]

    # Subclass hooks -------------------------------------------------------------------------
    def _preprocess(self, rgb: np.ndarray) -> np.ndarray:
        return imagenet_tensor(rgb, self.spec)

    def _postprocess(self, raw: np.ndarray, height: int, width: int) -> np.ndarray:
        return map_to_image(raw, height, width)

    def _fallback(self) -> Callable[[np.ndarray, list], np.ndarray]:
        raise NotImplementedError


def imagenet_tensor(rgb: np.ndarray, spec: ModelSpec, interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """RGB uint8 -> 1x3xHxW float32 per the spec's input contract (size, scale, mean/std)."""
    contract = spec.input
    h, w = contract.size or rgb.shape[:2]
    x = cv2.resize(rgb, (w, h), interpolation=interpolation).astype(np.float32)
    x /= max(float(x.max()), 1e-6) if contract.scale == "max" else 255.0
    if contract.mean is not None and contract.std is not None:
        x = (x - np.asarray(contract.mean, np.float32)) / np.asarray(contract.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def map_to_image(
    raw: np.ndarray, height: int, width: int, interpolation: int = cv2.INTER_CUBIC
) -> np.ndarray:
    """A network's single-channel output -> float32 HxW in [0, 1] at the image size (min-max)."""
    m = np.squeeze(raw).astype(np.float32)
    if m.ndim != 2:
        raise ValueError(f"expected a single-channel map, got output shape {raw.shape}")
    m = cv2.resize(m, (width, height), interpolation=interpolation)
    lo, hi = float(m.min()), float(m.max())
    if hi - lo < 1e-12:
        return np.zeros((height, width), np.float32)
    return ((m - lo) / (hi - lo)).astype(np.float32)


def _contract_problem(compiled: ov.CompiledModel, spec: ModelSpec) -> str | None:
    """Why the compiled network does not fit the spec's contract, or None."""
    if len(compiled.outputs) <= spec.output.index:
        return f"expected at least {spec.output.index + 1} outputs, found {len(compiled.outputs)}"
    shape = compiled.input(0).get_partial_shape()
    expected = spec.input.shape
    if spec.input.run_size is not None:  # reshaped before compiling
        expected = (*expected[:2], *spec.input.run_size)
    if shape.rank.is_static and len(shape) != len(expected):
        return f"input rank {len(shape)} differs from the contract {expected}"
    for dim, want in zip(shape, expected, strict=False):
        if want != -1 and dim.is_static and dim.get_length() != want:
            return f"input shape {shape} differs from the contract {expected}"
    return None
