"""Foreground probability: U²-Netp on OpenVINO, or the GrabCut + saliency fallback.

Output convention: float32 HxW probability in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from poster_assets.models.dense import DenseEstimator, imagenet_tensor, map_to_image

FOREGROUND_MODEL = "u2netp"


class ForegroundSegmenter(DenseEstimator):
    """``ForegroundSegmenter(models_dir).predict_batch(images, text_boxes)``.

    Uses the network when the registry's active ``u2netp`` file is present, verifies and fits
    the contract; otherwise ``poster_assets.vision.foreground_grabcut.foreground_probability``
    (version ``fg:grabcut-saliency-v1``), and ``reason`` says why. Pre-processing is rembg's:
    RGB resized (Lanczos) to 320x320, divided by the image maximum, ImageNet mean/std, NCHW;
    of the seven side outputs the first (d0, the fused map) is min-max normalised and resized
    back.
    """

    model_name = FOREGROUND_MODEL

    def _preprocess(self, rgb: np.ndarray) -> np.ndarray:
        return imagenet_tensor(rgb, self.spec, interpolation=cv2.INTER_LANCZOS4)

    def _postprocess(self, raw: np.ndarray, height: int, width: int) -> np.ndarray:
        return map_to_image(raw, height, width, interpolation=cv2.INTER_LINEAR)

    def _fallback(self) -> Callable[[np.ndarray, list], np.ndarray]:
        from poster_assets.vision.foreground_grabcut import foreground_probability  # lazy

        return foreground_probability
