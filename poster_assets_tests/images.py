"""Real photographs bundled with scikit-image, as RGB uint8 (grey ones stacked to 3 channels)."""

from __future__ import annotations

import numpy as np
from skimage import data

_NAMES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "colorwheel",
    "retina",
    "camera",
    "coins",
    "brick",
    "grass",
    "moon",
    "page",
    "clock",
    "cell",
)


def _rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def sample_images() -> list[np.ndarray]:
    images = [_rgb(getattr(data, name)()) for name in _NAMES]
    images.append(_rgb(data.stereo_motorcycle()[0]))
    return images
