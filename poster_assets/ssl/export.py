"""The trained encoder (trunk + 128-d projection + L2 normalisation) as OpenVINO IR, and the
embedder that runs it with exactly the training preprocessing.

The IR carries what inference needs in its runtime info (``poster_assets`` section): the
input size and the checkpoint's sha256, so an IR file alone says which model it is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import openvino as ov

from poster_assets.models.efficientnet_lite import l2_normalise
from poster_assets.models.runtime import compile_model, core
from poster_assets.ssl.data import to_input
from poster_assets.ssl.model import EMBED_DIM

MODEL_NAME = "ssl-encoder"
IR_NAME = "model.xml"
_RT = "poster_assets"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_openvino(checkpoint: Path, out_dir: Path) -> Path:
    """Convert ``checkpoint`` to ``out_dir/ssl_encoder_<sha12>/model.xml`` (fp32) and return it.

    Written into a temporary folder and renamed in one step; an IR already there for the same
    checkpoint is reused.
    """
    import torch

    from poster_assets.ssl.model import NormalisedEncoder
    from poster_assets.ssl.train import load_checkpoint

    checkpoint = Path(checkpoint)
    sha = file_sha256(checkpoint)
    target = Path(out_dir) / f"ssl_encoder_{sha[:12]}" / IR_NAME
    if target.exists() and target.with_suffix(".bin").exists():
        return target
    model, config, payload = load_checkpoint(checkpoint)
    net = NormalisedEncoder(model.encoder).eval()
    size = config.image_size
    with torch.no_grad():
        ov_model = ov.convert_model(
            net, example_input=torch.zeros(2, 3, size, size), input=[ov.PartialShape([-1, 3, size, size])]
        )
    ov_model.inputs[0].get_tensor().set_names({"pixels"})
    ov_model.outputs[0].get_tensor().set_names({"embedding"})
    for key, value in {
        "model": MODEL_NAME,
        "checkpoint_sha256": sha,
        "image_size": str(size),
        "data_version": payload["data_version"],
    }.items():
        ov_model.set_rt_info(value, [_RT, key])
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent.parent))
    try:
        # fp32 weights: fp16 compression would move the vectors away from the checkpoint's.
        ov.save_model(ov_model, tmp / IR_NAME, compress_to_fp16=False)
        try:
            os.rename(tmp, target.parent)
        except OSError:
            if not target.exists():  # not a lost race with another exporter: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class SslEmbedder:
    """``embed(list of RGB uint8) -> (N, 128)`` unit vectors from an exported IR."""

    dim = EMBED_DIM

    def __init__(self, ir_path: Path, batch_size: int = 32, cache_dir: str | None = None) -> None:
        self.ir_path = Path(ir_path)
        self.batch_size = batch_size
        model = core(cache_dir).read_model(str(self.ir_path))
        if not model.has_rt_info([_RT, "checkpoint_sha256"]):
            raise ValueError(f"{self.ir_path} is not an IR written by export_openvino")

        def info(key: str) -> str:
            return model.get_rt_info([_RT, key]).astype(str)

        self.checkpoint_sha256 = info("checkpoint_sha256")
        self.image_size = int(info("image_size"))
        self.data_version = info("data_version")
        self.version = f"{MODEL_NAME}@{self.checkpoint_sha256[:12]}"
        # f32, not the CPU's bf16 default: embeddings must not depend on the worker's CPU.
        self._compiled = compile_model(
            self.ir_path, hint="THROUGHPUT", cache_dir=cache_dir, INFERENCE_PRECISION_HINT="f32"
        )

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(images), EMBED_DIM), np.float32)
        request = self._compiled.create_infer_request()
        for start in range(0, len(images), self.batch_size):
            batch = to_input(images[start : start + self.batch_size], self.image_size)
            out[start : start + len(batch)] = request.infer({0: batch})[0]
        return l2_normalise(out)
