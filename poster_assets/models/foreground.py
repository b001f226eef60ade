"""Foreground probability: IS-Net (its fp16 "medium" or quantized "small" export), else
U²-Netp, on OpenVINO, else the GrabCut + saliency fallback.

Output convention: float32 HxW probability in [0, 1].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from poster_assets.models.dense import (
    DenseEstimator,
    DenseSelection,
    imagenet_tensor,
    map_to_image,
    select_network,
)
from poster_assets.models.registry import get_spec

# In order of preference: the first that is present, verifies and fits its contract runs.
# The two IS-Net exports give the same masks; the fp16 one runs about 3x faster on OpenVINO.
FOREGROUND_MODELS = ("isnet-general-medium", "isnet-general-small", "u2netp")
FOREGROUND_MODEL = FOREGROUND_MODELS[0]


class ForegroundSegmenter(DenseEstimator):
    """``ForegroundSegmenter(models_dir).predict_batch(images, text_boxes)``.

    Tries the registry's ``FOREGROUND_MODELS`` in order (or only ``model`` when given) and
    runs the first whose file is present, verifies and fits its contract (``select`` says which
    without compiling, and in which precision / INT8 network); when none does,
    ``poster_assets.vision.foreground_grabcut.foreground_probability`` (version
    ``fg:grabcut-saliency-v1``). ``reason`` says which one runs and why the ones before it
    do not.

    Pre-processing follows each network's recipe, as its input contract says: IS-Net takes
    RGB resized (area when shrinking) to its run size, ``x / 255 - 0.5``; U²-Netp takes
    rembg's: RGB resized (Lanczos) to 320x320, divided by the image maximum, ImageNet
    mean/std. Of the outputs the contract's (IS-Net's ``output``, U²-Netp's d0) is min-max
    normalised and resized back.
    """

    model_name = FOREGROUND_MODEL

    @classmethod
    def select(
        cls, models_dir: Path | None = None, model: str | None = None, precision: str | None = None
    ) -> DenseSelection:
        passed_over: list[str] = []
        for name in (model,) if model else FOREGROUND_MODELS:
            selection = select_network(get_spec(name, models_dir), models_dir, precision)
            if selection.neural:
                break
            passed_over.append(_without_fallback(selection.reason, selection.spec.fallback))
        spec = selection.spec
        if not selection.neural:
            return dataclasses.replace(selection, reason=f"using {spec.fallback}: " + "; ".join(passed_over))
        size = spec.input.run_size or spec.input.size
        at = f" at {size[0]}x{size[1]}" if size else ""
        why = "; ".join(passed_over) or ("asked for" if model else "the first choice")
        return dataclasses.replace(selection, reason=f"using {spec.name}{at}: present and verified ({why})")

    def _preprocess(self, rgb: np.ndarray) -> np.ndarray:
        if self.spec.input.scale == "max":  # rembg's U²-Net recipe
            return imagenet_tensor(rgb, self.spec, interpolation=cv2.INTER_LANCZOS4)
        h, w = self.spec.input.size or rgb.shape[:2]
        shrink = rgb.shape[0] * rgb.shape[1] > h * w
        return imagenet_tensor(rgb, self.spec, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def _postprocess(self, raw: np.ndarray, height: int, width: int) -> np.ndarray:
        return map_to_image(raw, height, width, interpolation=cv2.INTER_LINEAR)

    def _fallback(self) -> Callable[[np.ndarray, list], np.ndarray]:
        from poster_assets.vision.foreground_grabcut import foreground_probability  # lazy

        return foreground_probability


def _without_fallback(reason: str, fallback: str | None) -> str:
    """A model's reason for not running, without the "using <fallback>" it ends with (the
    next model in line may run instead)."""
    for tail in (f"; using {fallback}", f", using {fallback}"):
        if fallback and reason.endswith(tail):
            return reason.removesuffix(tail)
    return reason
