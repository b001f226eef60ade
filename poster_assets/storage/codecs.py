"""How masks, depth maps and layer labels are stored as PNG files, and read back.

One codec per kind of array, used by every writer and reader (extractors, search queries, SSL
training, evaluation), so a value read back is exactly what a query computed fresh would store.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

MASK_THRESHOLD = 0.5
_DEPTH_SCALE = 65535.0  # 16-bit PNG; 65535 = nearest
_MASK_SCALE = 255.0  # 8-bit PNG of a probability


# zlib level 1: a 1500x1000 16-bit depth map takes ~70 ms and ~1.07x the bytes of Pillow's
# default level 6, which took ~230 ms, more than the depth heuristic and IS-Net together.
_PNG_LEVEL = 1


def _png(array: np.ndarray) -> bytes:
    """A single-channel uint8 or uint16 array as a grey PNG (lossless: any level decodes the same)."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(array), [cv2.IMWRITE_PNG_COMPRESSION, _PNG_LEVEL])
    if not ok:
        raise ValueError(f"cannot encode a {array.shape} {array.dtype} array as PNG")
    return data.tobytes()


def encode_mask(prob: np.ndarray) -> bytes:
    """A [0, 1] probability map as an 8-bit PNG."""
    return _png(np.round(np.clip(prob, 0.0, 1.0) * _MASK_SCALE).astype(np.uint8))


def decode_mask(path: Path) -> np.ndarray:
    """float32 HxW probability in [0, 1] from a mask PNG."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / _MASK_SCALE


def quantize_mask(prob: np.ndarray) -> np.ndarray:
    """A probability map as ``decode_mask(encode_mask(prob))`` gives it back, without the file:
    a query image is then cropped with the same mask a stored poster would be."""
    return np.round(np.clip(prob, 0.0, 1.0) * _MASK_SCALE).astype(np.uint8).astype(np.float32) / _MASK_SCALE


def mask_bbox(mask: np.ndarray, threshold: float = MASK_THRESHOLD) -> list[int] | None:
    """[x0, y0, x1, y1] (exclusive) of the pixels at or above ``threshold`` (any pixel that is
    set, for a bool mask), or None when there are none."""
    ys, xs = np.nonzero(mask if mask.dtype == bool else mask >= threshold)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def encode_depth(norm: np.ndarray) -> bytes:
    """A [0, 1] depth map (1 = nearest) as a 16-bit PNG."""
    return _png(np.round(np.clip(norm, 0.0, 1.0) * _DEPTH_SCALE).astype(np.uint16))


def decode_depth(path: Path) -> np.ndarray:
    """float32 HxW depth in [0, 1] from a depth PNG."""
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.float32) / _DEPTH_SCALE


def encode_labels(labels: np.ndarray) -> bytes:
    """An integer label map (layer index per pixel, < 256 layers) as an 8-bit PNG."""
    return _png(labels.astype(np.uint8))


def decode_labels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)
