"""Views of a poster for training: the structure's crops and the random augmentations.

The subject crop is the foreground box (else the subject layer's box) with the background
blended to a blur, exactly as the ``foreground`` embedding kind feeds the ImageNet model
(``embed.kinds.foreground_crop``). The title crop is the OCR title box, grown a little.

Every view is then a random resized crop of its source, letterboxed to a square (as at
inference), flipped, colour-jittered, turned grey and blurred at random, in numpy/OpenCV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from poster_assets.embed.kinds import foreground_crop
from poster_assets.models.efficientnet_lite import letterbox
from poster_assets.ssl.labels import TrainItem

_TITLE_PAD = 0.15


@dataclass(frozen=True)
class Augment:
    """SimSiam-style augmentations at ``size`` px (the training size: ``TrainConfig.image_size``);
    ``scale`` is the crop's share of the area."""

    size: int
    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.8
    strength: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness contrast sat hue
    gray: float = 0.2
    blur: float = 0.5

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = letterbox(_random_resized_crop(rgb, self.scale, self.ratio, rng), self.size)
        if rng.random() < self.flip:
            out = out[:, ::-1]
        if rng.random() < self.jitter:
            out = _colour_jitter(out, self.strength, rng)
        if rng.random() < self.gray:
            out = np.repeat(cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        if rng.random() < self.blur:
            sigma = rng.uniform(0.1, 2.0) * self.size / 224
            out = cv2.GaussianBlur(np.ascontiguousarray(out), (0, 0), sigmaX=sigma)
        return np.ascontiguousarray(out)


def _random_resized_crop(
    rgb: np.ndarray, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    h, w = rgb.shape[:2]
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))) * (w / h)
        cw, ch = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return rgb[y0 : y0 + ch, x0 : x0 + cw]
    return rgb


def _colour_jitter(
    rgb: np.ndarray, strength: tuple[float, float, float, float], rng: np.random.Generator
) -> np.ndarray:
    b, c, s, hue = strength
    x = rgb.astype(np.float32)
    ops = rng.permutation(4)
    for op in ops:
        if op == 0:
            x = x * rng.uniform(1 - b, 1 + b)
        elif op == 1:
            mean = x.mean()
            x = (x - mean) * rng.uniform(1 - c, 1 + c) + mean
        elif op == 2:
            grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
            x = (x - grey[..., None]) * rng.uniform(1 - s, 1 + s) + grey[..., None]
        else:
            hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.int16)
            hsv[..., 0] = (hsv[..., 0] + round(rng.uniform(-hue, hue) * 180)) % 180
            x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
        x = np.clip(x, 0, 255)
    return x.astype(np.uint8)


def subject_view(item: TrainItem, rgb: np.ndarray, fg: np.ndarray | None) -> np.ndarray:
    """The subject crop: foreground box (else subject layer box) with the background blurred."""
    mask = fg if fg is not None else item.load_subject_layer()
    bbox = item.foreground_bbox or item.subject_bbox
    if mask is None:
        if bbox is None:
            return rgb
        mask = np.ones(rgb.shape[:2], np.float32)
    if bbox is not None:
        bbox = _scale_box(bbox, item, rgb)
    return foreground_crop(rgb, mask, bbox)


def title_view(item: TrainItem, rgb: np.ndarray) -> np.ndarray | None:
    """The title crop: the title box grown by 15 % of its size a side, or None without one."""
    if item.title_box is None:
        return None
    x0, y0, x1, y1 = _scale_box(item.title_box, item, rgb)
    h, w = rgb.shape[:2]
    px, py = round(_TITLE_PAD * (x1 - x0)), round(_TITLE_PAD * (y1 - y0) + 2)
    x0, y0, x1, y1 = max(0, x0 - px), max(0, y0 - py), min(w, x1 + px), min(h, y1 + py)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return rgb[y0:y1, x0:x1]


def _scale_box(box: Sequence[int], item: TrainItem, rgb: np.ndarray) -> tuple[int, int, int, int]:
    """A box in original poster pixels, in the (possibly downscaled) cached image."""
    sx, sy = rgb.shape[1] / item.width, rgb.shape[0] / item.height
    x0, y0, x1, y1 = box
    return (
        int(x0 * sx),
        int(y0 * sy),
        max(int(x0 * sx) + 1, round(x1 * sx)),
        max(int(y0 * sy) + 1, round(y1 * sy)),
    )
