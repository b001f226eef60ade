"""``depth:heuristic-v1``: the offline fallback for monocular depth when MiDaS cannot be pulled.

Output follows the project's convention: float32 HxW in [0, 1], 1 = nearest. Cues, each
normalised to [0, 1] and blended with fixed weights:

- sharpness: local Laplacian energy. Posters are shot with a shallow depth of field, so the
  in-focus subject is near and the defocused backdrop is far;
- local contrast and colour saturation: atmospheric perspective washes out distant things;
- a centre prior: the subject of a poster is framed near the middle;
- a ground-plane prior: lower in the frame is nearer (the floor comes towards the viewer).

The blend is smoothed by a guided filter with the image as guide, so depth edges (and hence
layer edges) follow object edges. Text glyphs in ``text_boxes`` are the nearest plane: titles
and credits are printed on top of the picture; the rest of the scene is kept below
``_SCENE_MAX`` so the text plane is a separate histogram mode.

Everything runs at a long side of 320 px and is resized back: a few ms per poster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from poster_assets.vision.text_ink import text_ink_mask

DEPTH_HEURISTIC_VERSION = "depth:heuristic-v1"

_WORK_LONG_SIDE = 320
_SCENE_MAX = 0.85  # scene depth lives in [0, 0.85]; text sits alone at 1.0
_WEIGHTS = {"sharpness": 0.30, "contrast": 0.15, "saturation": 0.15, "centre": 0.25, "ground": 0.15}


def _normalise(x: np.ndarray, lo_pct: float = 2.0, hi_pct: float = 98.0) -> np.ndarray:
    """Robust min-max to [0, 1] (percentiles, so a few hot pixels do not flatten the rest)."""
    lo, hi = np.percentile(x, [lo_pct, hi_pct])
    if hi - lo < 1e-6:
        return np.zeros_like(x, dtype=np.float32)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide): edge-aware smoothing of ``src`` along ``guide``.

    opencv-contrib has one (``cv2.ximgproc``) but the project ships the headless main wheel.
    """
    ksize = (2 * radius + 1, 2 * radius + 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, cv2.CV_32F, ksize, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def _cues(rgb_small: np.ndarray) -> dict[str, np.ndarray]:
    h, w = rgb_small.shape[:2]
    sigma = max(h, w) / 40.0  # pools cues over roughly a 5 % window
    gray = cv2.cvtColor(rgb_small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    sharp = np.log1p(50.0 * cv2.GaussianBlur(lap * lap, (0, 0), sigma))
    mean = cv2.GaussianBlur(gray, (0, 0), sigma)
    contrast = np.sqrt(np.maximum(cv2.GaussianBlur(gray * gray, (0, 0), sigma) - mean * mean, 0.0))
    hsv = cv2.cvtColor(rgb_small, cv2.COLOR_RGB2HSV).astype(np.float32) / 255.0
    sat = cv2.GaussianBlur(hsv[..., 1] * np.sqrt(hsv[..., 2]), (0, 0), sigma)  # dark pixels' hue is noise
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = xx / max(1, w - 1), yy / max(1, h - 1)
    centre = np.exp(-((xn - 0.5) ** 2 / (2 * 0.22**2) + (yn - 0.55) ** 2 / (2 * 0.28**2)))
    return {
        "sharpness": _normalise(sharp),
        "contrast": _normalise(contrast),
        "saturation": _normalise(sat),
        "centre": centre.astype(np.float32),
        "ground": yn.astype(np.float32),
    }


def estimate_depth(rgb: np.ndarray, text_boxes: Sequence[Any] = ()) -> np.ndarray:
    """Relative inverse depth of ``rgb`` (HxWx3 uint8): float32 HxW in [0, 1], 1 = nearest.

    ``text_boxes``: OCR boxes [x0, y0, x1, y1] or polygons; their glyph pixels become the
    nearest plane (1.0).
    """
    h, w = rgb.shape[:2]
    s = min(1.0, _WORK_LONG_SIDE / max(h, w))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ink = text_ink_mask(rgb, text_boxes) if len(text_boxes) else None
    if ink is not None and ink.any():
        # Sharp, contrasty glyphs would drag the scene around them forward: paint them out first.
        ink_small = cv2.resize(ink.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
        ink_small = cv2.dilate(ink_small.astype(np.uint8), np.ones((3, 3), np.uint8))
        small = cv2.inpaint(small, ink_small, 3, cv2.INPAINT_TELEA)
    cues = _cues(small)
    blend = sum(_WEIGHTS[name] * cue for name, cue in cues.items())
    guide = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    radius = max(2, round(max(small.shape[:2]) / 40))
    smooth = guided_filter(guide, blend.astype(np.float32), radius, eps=1e-3)
    top = _SCENE_MAX if ink is not None and ink.any() else 1.0
    scene = _normalise(smooth, 0.5, 99.5) * top
    depth = cv2.resize(scene, (w, h), interpolation=cv2.INTER_LINEAR)
    if ink is not None:
        depth[ink] = 1.0
    return np.clip(depth, 0.0, 1.0).astype(np.float32)
