"""scikit-image's bundled sample images (shipped in the wheel: nothing is downloaded)."""

from __future__ import annotations

from functools import cache

import numpy as np
import skimage.data

# Images every scikit-image wheel bundles; the rest of skimage.data needs pooch and a network.
_BUNDLED = (
    "astronaut", "chelsea", "coffee", "rocket", "camera", "moon", "retina", "horse",
    "hubble_deep_field", "grass", "gravel", "brick",
)


@cache
def sample_image(name: str) -> np.ndarray:
    """A bundled sample as uint8 (HxW or HxWx3); ``horse`` is the silhouette, 255 = horse."""
    if name not in _BUNDLED:
        raise KeyError(f"unknown sample image {name!r}; bundled: {', '.join(_BUNDLED)}")
    img = getattr(skimage.data, name)()
    if name == "horse":  # skimage marks the background True
        img = np.where(img, 0, 255)
    img = np.ascontiguousarray(img.astype(np.uint8))
    img.flags.writeable = False  # shared across posters through the cache
    return img
