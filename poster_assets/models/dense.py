"""Shared machinery of the image-to-map estimators (depth, foreground): pick the neural path or
the classical fallback from the registry, and run the network over lists of images with an
OpenVINO ``AsyncInferQueue`` so pre-processing of the next image overlaps inference of the
previous ones and several requests run in parallel streams (THROUGHPUT hint).

Which network runs, in which precision and whether as its INT8 network (``models.quantize``,
where its gate passed) is decided without compiling anything (``DenseEstimator.select`` ->
``DenseSelection``), so the versions that say which values are current cost milliseconds; the
estimator compiles what the selection names and its ``version`` is the selection's.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import openvino as ov

from poster_assets.models import runtime
from poster_assets.models.precision import dense_choice
from poster_assets.models.quantize import Int8Choice, Int8Model
from poster_assets.models.registry import ModelSpec, get_spec, size_tag
from poster_assets.models.weights import model_status, model_version
from poster_assets.settings import models_dir as default_models_dir
from poster_assets.storage.files import atomic_dir, atomic_write_text

log = logging.getLogger(__name__)

Boxes = Sequence[Sequence[int]]
# Verdicts of ``network_problem``, one small JSON file per network file and contract.
VERDICTS_DIR = "contracts"
# Networks reshaped to their run size, as IR (``read_float``).
RESIZED_DIR = "resized"
_VERDICT_FORMAT = 1  # bump when the checks change: older verdicts are then found afresh


@dataclass(frozen=True)
class DenseSelection:
    """What a dense estimator runs, decided without compiling: ``path`` of the verified float
    network (None: the classical fallback runs, ``reason`` says why), the precision its float
    parts compute in, and the INT8 choice for it (``int8.model``: the INT8 network to run)."""

    spec: ModelSpec
    reason: str
    path: Path | None = None
    precision: str = ""
    int8: Int8Choice | None = None

    @property
    def neural(self) -> bool:
        return self.path is not None

    @property
    def int8_model(self) -> Int8Model | None:
        return self.int8.model if self.int8 else None

    @property
    def version(self) -> str:
        """The version its values carry: the weights, ``:int8-<id>`` when the INT8 network runs,
        and the precision (``runtime.versioned``); or the fallback's version string."""
        if not self.neural:
            return self.spec.fallback or "unavailable"
        int8_id = self.int8_model.id if self.int8_model else None
        return runtime.versioned(model_version(self.spec), hint=self.precision, int8=int8_id)


def int8_variant(spec: ModelSpec) -> str:
    """What an INT8 plan of ``spec`` adds to name its graph (``precision.dense_plan``): the run
    size (``640px``) when the network is reshaped before it runs, else nothing."""
    run_size = spec.input.run_size
    return size_tag(run_size) if run_size else ""


def select_network(
    spec: ModelSpec, models_dir: Path | None = None, precision: str | None = None
) -> DenseSelection:
    """Whether ``spec``'s network runs (its file is present, verifies and fits its contract) and
    how: at the precision the ``INFERENCE_PRECISION_HINT`` ``precision`` gives (None: the CPU's
    default), as its INT8 network where the one for that precision and run size passed its gate."""
    status = model_status(spec, models_dir)
    if status.state != "present":
        return DenseSelection(spec, status.reason)
    if problem := network_problem(spec, status.path, models_dir):
        return DenseSelection(spec, f"{spec.name}: {problem}; refusing it, using {spec.fallback}")
    prec = runtime.inference_precision(hint=precision)
    choice = dense_choice(spec, prec, models_dir, variant=int8_variant(spec))
    return DenseSelection(spec, status.reason, status.path, prec, choice)


def read_float(spec: ModelSpec, path: Path | str, cache_dir: str | None = None) -> ov.Model:
    """The float network as the estimator runs it: reshaped to its run size (constant-size
    resizes rewritten to scales first) or as exported. What INT8 networks are made from."""
    if spec.input.run_size is None:
        return runtime.core(cache_dir).read_model(str(path))
    return _resized(spec, Path(path), cache_dir)


def _resized(spec: ModelSpec, path: Path, cache_dir: str | None) -> ov.Model:
    """The network at its run size, kept as IR beside the pulled file (``<models>/resized/``,
    recorded and checked like every converted model, ``models.artifacts``): rewriting IS-Net's
    88 MB graph takes ~1.3 s in every new process, reading the checked IR ~0.3 s. A changed IR
    is discarded and written again; a folder that cannot be written costs only the time."""
    from poster_assets.models import artifacts  # lazy: a cycle through weights otherwise

    assert spec.input.run_size is not None
    core = runtime.core(cache_dir)
    sha, size = (spec.sha256 or "unpinned")[:12], size_tag(spec.input.run_size)
    release = ov.__version__.split("-")[0]  # "2026.4.1-22982-<sha>-releases/2026/4"
    folder = path.parent / RESIZED_DIR / f"{spec.name}-{sha}-{size}-ov{release}"
    xml = folder / artifacts.IR_FILES[0]
    if xml.exists():
        try:
            return artifacts.read_ir(xml, core)
        except artifacts.ArtifactChangedError as exc:
            log.warning("%s; writing it again", exc)
            artifacts.discard(folder)
    from poster_assets.models.onnx_resize import read_resized  # lazy: imports onnx

    model = read_resized(path, spec.input.run_size, cache_dir)
    try:
        with atomic_dir(folder) as tmp:
            # Uncompressed: the IR must compute exactly what the rewritten graph does.
            ov.save_model(model, str(tmp / artifacts.IR_FILES[0]), compress_to_fp16=False)
            made_from = {"model": model_version(spec), "run_size": list(spec.input.run_size)}
            artifacts.record_hashes(tmp, source=made_from)
    except (OSError, RuntimeError) as exc:
        # OpenVINO reports a failed write (a full disk) as RuntimeError: that must not read as
        # "cannot run at this size" to ``network_problem``, which would refuse the network.
        log.warning("cannot keep the resized %s (%s); it is rewritten in each process", spec.name, exc)
    return model


def network_problem(spec: ModelSpec, path: Path, models_dir: Path | None = None) -> str | None:
    """Why the verified network at ``path`` cannot run as ``spec`` says (it cannot be reshaped
    to its run size, or its inputs or outputs differ from the contract), or None. Found by
    reading the graph, not compiling it (seconds for IS-Net), and kept under
    ``<models>/contracts/`` keyed by the file's sha256, the contract and the OpenVINO version,
    so later processes answer in milliseconds."""
    record = _verdict_path(spec, models_dir)
    try:
        return json.loads(record.read_text(encoding="utf-8"))["problem"]
    except (OSError, ValueError, KeyError):
        pass
    problem = _read_problem(spec, path, _cache_dir(models_dir))
    try:
        atomic_write_text(record, json.dumps({"model": model_version(spec), "problem": problem}))
    except OSError as exc:  # a read-only models folder: the verdict is found again next time
        log.debug("cannot record the contract verdict of %s: %s", spec.name, exc)
    return problem


def _verdict_path(spec: ModelSpec, models_dir: Path | None) -> Path:
    contract = {
        "sha256": spec.sha256,
        "input": dataclasses.asdict(spec.input),
        "output": spec.output.index,
        "openvino": ov.__version__,
        "format": _VERDICT_FORMAT,
    }
    key = hashlib.sha256(json.dumps(contract, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(models_dir) if models_dir else default_models_dir()
    return root / VERDICTS_DIR / f"{spec.name}-{key}.json"


def _cache_dir(models_dir: Path | None) -> str | None:
    """The compile cache the estimator uses (and so the ``runtime.core`` it reads with)."""
    return str(Path(models_dir) / "ov_cache") if models_dir else None


def _read_problem(spec: ModelSpec, path: Path, cache_dir: str | None) -> str | None:
    try:
        model = read_float(spec, path, cache_dir)
    except (RuntimeError, ValueError) as err:
        if spec.input.run_size is None:
            raise
        # A size the network cannot be reshaped to (its skip connections no longer align).
        h, w = spec.input.run_size
        return f"cannot run at {h}x{w} ({err})"
    return _contract_problem(model, spec)


@functools.cache
def _compiled_float(
    spec: ModelSpec, path: str, hint: str, cache_dir: str | None, precision: str | None
) -> ov.CompiledModel:
    # Keyed by the spec (its sha256 and run size), so a replaced file is compiled afresh.
    config = {runtime.PRECISION_HINT: precision} if precision else {}
    # As exported: from the path; at another size: the reshaped graph.
    model = path if spec.input.run_size is None else read_float(spec, path, cache_dir)
    return runtime.compile_model(model, hint=hint, cache_dir=cache_dir, **config)


def release_compiled() -> None:
    """Forget the compiled float networks, so memory goes with the last estimator using one."""
    _compiled_float.cache_clear()


def _compile(
    selection: DenseSelection, hint: str, cache_dir: str | None, precision: str | None
) -> ov.CompiledModel:
    assert selection.path is not None
    int8 = selection.int8_model
    if int8 is None:
        return _compiled_float(selection.spec, str(selection.path), hint, cache_dir, precision)
    config = {runtime.PRECISION_HINT: precision} if precision else {}
    # Compiled from the bytes checked against its record (the INT8 IR is made at the run size).
    return runtime.compile_model(int8.read(runtime.core(cache_dir)), hint=hint, cache_dir=cache_dir, **config)


class DenseEstimator:
    """Base of ``DepthEstimator`` and ``ForegroundSegmenter``: subclasses give the model name,
    the fallback function and the pre/post-processing (and may choose among several models by
    overriding ``select``)."""

    model_name: str = ""

    def __init__(
        self,
        models_dir: Path | None = None,
        model: str | None = None,
        hint: str = "THROUGHPUT",
        precision: str | None = None,
        int8: Int8Model | None | Literal["auto"] = "auto",
    ) -> None:
        """``precision``: OpenVINO's ``INFERENCE_PRECISION_HINT`` (``"f32"`` for exact
        results); by default the CPU plugin picks bf16 where the CPU has it (about 2 decimal
        digits on these normalised maps, and faster). ``int8``: ``"auto"`` runs the INT8
        network where its gate passed, None the float one, an ``Int8Model`` that network
        (gates and benchmarks)."""
        selection = self.select(models_dir, model, precision)
        if int8 != "auto" and selection.int8 is not None:
            why = f"{selection.spec.name}: INT8 {int8.id} as asked" if int8 else "float as asked"
            selection = dataclasses.replace(
                selection, int8=dataclasses.replace(selection.int8, model=int8, reason=why)
            )
        self.selection = selection
        self.spec: ModelSpec = selection.spec
        self.reason = selection.reason
        self.int8: Int8Model | None = selection.int8_model
        self.version = selection.version
        self._compiled: ov.CompiledModel | None = None
        self._queue: ov.AsyncInferQueue | None = None
        self._lock = threading.Lock()
        if not selection.neural:
            return
        self._compiled = _compile(selection, hint, _cache_dir(models_dir), precision)
        # What computed the values, as compiled; the selection named it the same way.
        self.version = runtime.versioned(
            model_version(self.spec), self._compiled, int8=self.int8.id if self.int8 else None
        )

    @classmethod
    def select(
        cls, models_dir: Path | None = None, model: str | None = None, precision: str | None = None
    ) -> DenseSelection:
        """What ``cls(models_dir, model, precision=precision)`` runs, without compiling: its
        ``version`` is the estimator's."""
        return select_network(get_spec(model or cls.model_name, models_dir), models_dir, precision)

    @property
    def neural(self) -> bool:
        """True when the network runs, False when the classical fallback does."""
        return self._compiled is not None

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


def _contract_problem(model: ov.Model, spec: ModelSpec) -> str | None:
    """Why the network (as it will be compiled) does not fit the spec's contract, or None."""
    if len(model.outputs) <= spec.output.index:
        return f"expected at least {spec.output.index + 1} outputs, found {len(model.outputs)}"
    shape = model.input(0).get_partial_shape()
    expected = spec.input.shape
    if spec.input.run_size is not None:  # reshaped before it runs
        expected = (*expected[:2], *spec.input.run_size)
    if shape.rank.is_static and len(shape) != len(expected):
        return f"input rank {len(shape)} differs from the contract {expected}"
    for dim, want in zip(shape, expected, strict=False):
        if want != -1 and dim.is_static and dim.get_length() != want:
            return f"input shape {shape} differs from the contract {expected}"
    return None
