"""What gets embedded for each embedding kind, and the raw-pixel baseline.

Kinds:

- ``foreground``: the foreground subject, cropped to its box (with padding) and with the
  background suppressed, so the ImageNet features describe the subject rather than the
  poster's title and backdrop.
- ``poster``: the whole poster.
- ``pixels``: a tiny thumbnail as a vector; no model. A baseline that any learned
  embedding must beat on genre retrieval, and good enough for exact near-duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import cv2
import numpy as np

from poster_assets.extract.versions import EMBEDDING_KINDS, PIXELS_SIZE
from poster_assets.storage.codecs import mask_bbox

_GREY = 127.0
# The longest side a foreground crop is made at: twice the embedders' input (224 px), so they
# lose nothing, while blending and blurring a full-resolution crop (a blur of sigma ~50 px on
# a 1000 px crop) cost 0.35 s per poster, three quarters of the embedding step.
CROP_MAX_SIDE = 448


class Embedder(Protocol):
    version: str

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")


def _padded_box(bbox: Sequence[int], pad: float, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in bbox)
    px, py = round(pad * (x1 - x0)), round(pad * (y1 - y0))
    x0, y0 = max(0, x0 - px), max(0, y0 - py)
    x1, y1 = min(width, x1 + px), min(height, y1 + py)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {list(bbox)} is empty inside a {width}x{height} image")
    return x0, y0, x1, y1


def foreground_crop(
    rgb: np.ndarray,
    fg_mask: np.ndarray,
    bbox: Sequence[int] | None = None,
    pad: float = 0.1,
    suppress: Literal["blur", "gray"] = "blur",
    max_side: int | None = CROP_MAX_SIDE,
) -> np.ndarray:
    """The foreground subject: crop to ``bbox`` (default: the mask's box) grown by ``pad`` of
    its size on each side, shrunk to at most ``max_side`` pixels on its longest side, and blend
    the background (low mask) to a heavy blur or flat grey.

    A soft blend by the mask probability keeps uncertain edges half-visible instead of
    cutting them. With an empty mask and no box the whole poster is returned unchanged.
    """
    _check_rgb(rgb)
    h, w = rgb.shape[:2]
    mask = np.asarray(fg_mask, dtype=np.float32)
    if mask.shape != (h, w):
        # Segmenters often run at a lower resolution than the poster.
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    mask = np.clip(mask, 0.0, 1.0)
    if bbox is None:
        bbox = mask_bbox(mask)
        if bbox is None:
            return rgb.copy()
    x0, y0, x1, y1 = _padded_box(bbox, pad, w, h)
    crop, alpha = rgb[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    scale = max_side / max(crop.shape[:2]) if max_side else 1.0
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    crop, alpha = crop.astype(np.float32), alpha[:, :, None]
    if suppress == "gray":
        background = np.full_like(crop, _GREY)
    elif suppress == "blur":
        sigma = max(crop.shape[:2]) / 20  # heavy enough to erase texture, keeps colour mood
        background = cv2.GaussianBlur(crop, (0, 0), sigmaX=sigma, sigmaY=sigma)
    else:
        raise ValueError(f"suppress must be 'blur' or 'gray', got {suppress!r}")
    out = alpha * crop + (1.0 - alpha) * background
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def whole_poster(rgb: np.ndarray) -> np.ndarray:
    """The whole poster (the embedder letterboxes it to the network's square input)."""
    _check_rgb(rgb)
    return np.ascontiguousarray(rgb)


def raw_pixel_embedding(rgb: np.ndarray, size: int = PIXELS_SIZE) -> np.ndarray:
    """A ``size`` x ``size`` RGB thumbnail as a unit vector, mean-centred so that cosine
    similarity compares layout and colour contrast rather than overall brightness."""
    _check_rgb(rgb)
    thumb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    thumb -= thumb.mean()
    norm = float(np.linalg.norm(thumb))
    if norm < 1e-6:  # a flat image has no direction; any fixed unit vector will do
        thumb = np.full_like(thumb, 1.0)
        norm = float(np.linalg.norm(thumb))
    return thumb / norm


def kind_inputs(
    kind: str,
    rgb: np.ndarray,
    fg_mask: np.ndarray | None = None,
    bbox: Sequence[int] | None = None,
) -> np.ndarray:
    """The image an embedding kind feeds to the model."""
    if kind == "foreground":
        if fg_mask is None:
            raise ValueError("the foreground kind needs a foreground mask")
        return foreground_crop(rgb, fg_mask, bbox)
    if kind in ("poster", "pixels"):
        return whole_poster(rgb)
    raise ValueError(f"unknown embedding kind {kind!r}; expected one of {EMBEDDING_KINDS}")


def embed_kind(
    kind: str,
    images: Sequence[np.ndarray],
    embedder: Embedder | None = None,
    fg_masks: Sequence[np.ndarray | None] | None = None,
    bboxes: Sequence[Sequence[int] | None] | None = None,
) -> np.ndarray:
    """(N, dim) unit vectors of one kind for a batch of posters."""
    if kind == "pixels":
        return (
            np.stack([raw_pixel_embedding(im) for im in images])
            if images
            else np.empty((0, PIXELS_SIZE * PIXELS_SIZE * 3), np.float32)
        )
    if embedder is None:
        raise ValueError(f"the {kind} kind needs an embedder")
    masks = fg_masks if fg_masks is not None else [None] * len(images)
    boxes = bboxes if bboxes is not None else [None] * len(images)
    crops = [kind_inputs(kind, im, m, b) for im, m, b in zip(images, masks, boxes, strict=True)]
    return embedder.embed(crops)
