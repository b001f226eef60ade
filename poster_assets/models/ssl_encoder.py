"""The project's own trained encoder (``poster_assets.ssl``) as a model like the others.

Training exports it to OpenVINO IR under ``<models>/ssl/ssl_encoder_<checkpoint sha12>/``; the
pointer ``<models>/ssl/current.json`` names the one in use, and is only rewritten once the
encoder passed its health check. ``SslEmbedder`` runs an exported IR with exactly the training
preprocessing (letterbox to the trained size, pixels to [-1, 1]); the IR carries that size and
the checkpoint's sha256 in its runtime info, so an IR file alone says which model it is.
The export records the sha256 of the IR's files (``models.artifacts``); ``SslEmbedder`` checks
them on the bytes it compiles and refuses an IR that changed since. No torch here: embedding
with a trained encoder needs only OpenVINO.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poster_assets.models.artifacts import read_ir
from poster_assets.models.efficientnet_lite import l2_normalise, preprocess
from poster_assets.models.runtime import compile_model, core
from poster_assets.storage.files import atomic_write_text

log = logging.getLogger(__name__)

MODEL_NAME = "ssl-encoder"
EMBED_DIM = 128
IR_NAME = "model.xml"
RT_SECTION = "poster_assets"  # runtime-info section of the IR written by ssl.export
POINTER = "current.json"


def ssl_dir(models_dir: Path) -> Path:
    """Where trained encoders and the pointer to the current one live."""
    return Path(models_dir) / "ssl"


def encoder_version(checkpoint_sha256: str) -> str:
    """The version stored with every vector of an encoder: named by its checkpoint."""
    return f"{MODEL_NAME}@{checkpoint_sha256[:12]}"


class SslEmbedder:
    """``embed(list of RGB uint8) -> (N, 128)`` unit vectors from an exported IR.

    Raises ``models.artifacts.ArtifactChangedError`` when the IR's files differ from the sha256
    recorded at export (an IR exported before records were kept is used with a warning)."""

    dim = EMBED_DIM

    def __init__(self, ir_path: Path, batch_size: int = 32, cache_dir: str | None = None) -> None:
        self.ir_path = Path(ir_path)
        self.batch_size = batch_size
        # Compiled from the checked bytes, so the compile cache is keyed by their content.
        model = read_ir(self.ir_path, core(cache_dir), require_record=False)
        if not model.has_rt_info([RT_SECTION, "checkpoint_sha256"]):
            raise ValueError(f"{self.ir_path} is not an IR written by poster_assets.ssl.export")

        def info(key: str) -> str:
            return model.get_rt_info([RT_SECTION, key]).astype(str)

        self.checkpoint_sha256 = info("checkpoint_sha256")
        self.image_size = int(info("image_size"))
        self.data_version = info("data_version")
        self.version = encoder_version(self.checkpoint_sha256)
        # f32, not the CPU's bf16 default: embeddings must not depend on the worker's CPU.
        self._compiled = compile_model(
            model, hint="THROUGHPUT", cache_dir=cache_dir, INFERENCE_PRECISION_HINT="f32"
        )

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(images), EMBED_DIM), np.float32)
        request = self._compiled.create_infer_request()
        for start in range(0, len(images), self.batch_size):
            batch = preprocess(images[start : start + self.batch_size], self.image_size)
            out[start : start + len(batch)] = request.infer({0: batch})[0]
        return l2_normalise(out)


@dataclass(frozen=True)
class SslEncoder:
    """The encoder ``current.json`` names."""

    version: str  # SslEmbedder.version of the IR
    ir_path: Path
    data_version: str
    checkpoint: Path


def current_encoder(models_dir: Path) -> SslEncoder | None:
    """The encoder the pointer names, or None before the first promoted training (or when the
    pointer names an IR that is gone)."""
    folder = ssl_dir(models_dir)
    try:
        data = json.loads((folder / POINTER).read_text(encoding="utf-8"))
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
        log.warning("%s names %s, which does not exist: no ssl kind", folder / POINTER, encoder.ir_path)
        return None
    return encoder


def promote(models_dir: Path, ir_path: Path, version: str, data_version: str, checkpoint: Path) -> Path:
    """Make an exported encoder the current one (readers see the old pointer or the new one)."""
    folder = ssl_dir(models_dir)
    payload = {
        "ir_path": os.path.relpath(ir_path, folder),
        "version": version,
        "data_version": data_version,
        "checkpoint": os.path.relpath(checkpoint, folder),
    }
    return atomic_write_text(folder / POINTER, json.dumps(payload, indent=2))
