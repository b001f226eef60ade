"""Monocular relative depth: MiDaS v2.1 small on OpenVINO, or the classical heuristic.

Output convention: float32 HxW in [0, 1], 1 = nearest. MiDaS predicts relative *inverse*
depth (larger = nearer), so a min-max normalisation of its output already has that meaning.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from poster_assets.models.dense import DenseEstimator

DEPTH_MODEL = "midas-small"


class DepthEstimator(DenseEstimator):
    """``DepthEstimator(models_dir).predict_batch(images, text_boxes)``.

    Uses the network when the registry's active ``midas-small`` file is present, verifies and
    fits the input contract; otherwise ``poster_assets.vision.depth_heuristic.estimate_depth``
    (version ``depth:heuristic-v1``), and ``reason`` says why. Pre-processing follows MiDaS:
    RGB resized (bicubic) to the contract size (256x256), /255, ImageNet mean/std, NCHW;
    post-processing resizes back (bicubic) and min-max normalises.
    """

    model_name = DEPTH_MODEL

    def _fallback(self) -> Callable[[np.ndarray, list], np.ndarray]:
        from poster_assets.vision.depth_heuristic import estimate_depth  # written alongside; lazy

        return estimate_depth
