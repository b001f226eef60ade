"""``fg:grabcut-saliency-v1``: the offline fallback for background segmentation (U²-Net's stand-in).

GrabCut needs a seed. It gets one from three priors:

- saliency: colour contrast against the poster's border colours (the border of a poster is
  background, so "unlike the border" is "likely subject"), times the spectral-residual
  saliency of Hou & Zhang (2007), which lifts textured, structured regions over flat ones;
- the border: a thin frame is sure background;
- text: title and credit glyphs are not the subject, so they are painted out (inpainted from
  their surroundings) before saliency and GrabCut see the image. They neither seed nor cut
  the subject: a subject behind a title stays whole, text over the backdrop stays background.

GrabCut runs at a long side of 256 px; its hard mask becomes a soft probability through a
sigmoid of the signed distance to the mask edge, and is resized back to the poster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from poster_assets.vision.text_ink import text_ink_mask

FOREGROUND_GRABCUT_VERSION = "fg:grabcut-saliency-v1"

_WORK_LONG_SIDE = 256
_BORDER = 0.03  # share of each side that is sure background
_ITERATIONS = 5
_EDGE_SOFTNESS = 1.5  # px at work resolution: the sigmoid's scale across the mask edge
_MIN_COMPONENT = 0.01  # blobs smaller than this share of the poster are dropped


def spectral_residual_saliency(gray: np.ndarray, width: int = 64) -> np.ndarray:
    """Hou & Zhang's spectral residual on a ``width``-px copy; float32 [0, 1] at ``gray``'s size."""
    h, w = gray.shape
    small_h = max(8, round(h * width / w))
    small = cv2.resize(gray.astype(np.float32), (width, small_h), interpolation=cv2.INTER_AREA)
    spectrum = np.fft.fft2(small)
    log_amp = np.log(np.abs(spectrum) + 1e-8)
    residual = log_amp - cv2.blur(log_amp, (3, 3))
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), 2.5)
    sal = cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR)
    return (sal / max(float(sal.max()), 1e-8)).astype(np.float32)


def border_contrast_saliency(rgb: np.ndarray, border: int, clusters: int = 4) -> np.ndarray:
    """Lab distance of each pixel to the nearest of the border's dominant colours, in [0, 1].

    Several border colours rather than one mean, so a gradient or two-tone backdrop is still
    recognised as background everywhere.
    """
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    frame = np.concatenate(
        [
            lab[:border].reshape(-1, 3),
            lab[-border:].reshape(-1, 3),
            lab[:, :border].reshape(-1, 3),
            lab[:, -border:].reshape(-1, 3),
        ]
    )
    k = min(clusters, len(frame))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(0)  # cv2.kmeans draws from OpenCV's global RNG; make it repeatable
    _, _, centres = cv2.kmeans(frame, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    dist = np.min(np.linalg.norm(lab[:, :, None, :] - centres[None, None], axis=3), axis=2)
    dist = cv2.GaussianBlur(dist, (0, 0), 1.5)
    return np.clip(dist / max(float(np.percentile(dist, 99)), 1e-6), 0, 1).astype(np.float32)


def saliency_map(rgb_small: np.ndarray) -> np.ndarray:
    h, w = rgb_small.shape[:2]
    border = max(2, round(_BORDER * max(h, w)))
    contrast = border_contrast_saliency(rgb_small, border)
    gray = cv2.cvtColor(rgb_small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    residual = spectral_residual_saliency(gray)
    return (contrast * (0.6 + 0.4 * residual)).astype(np.float32)


def _drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[comp]


def _soft(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, 3)
    # tanh form of the logistic: no overflow far from the edge.
    return (0.5 + 0.5 * np.tanh((inside - outside) / (2 * _EDGE_SOFTNESS))).astype(np.float32)


def foreground_probability(rgb: np.ndarray, text_boxes: Sequence[Any] = ()) -> np.ndarray:
    """Foreground probability of ``rgb`` (HxWx3 uint8): float32 HxW in [0, 1].

    ``text_boxes``: OCR boxes [x0, y0, x1, y1] or polygons; their glyphs are painted out first.
    """
    h, w = rgb.shape[:2]
    s = min(1.0, _WORK_LONG_SIDE / max(h, w))
    size = (max(8, round(w * s)), max(8, round(h * s)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    if len(text_boxes):
        ink = cv2.resize(text_ink_mask(rgb, text_boxes).astype(np.uint8), size, interpolation=cv2.INTER_AREA)
        # Dilate: glyph outlines and anti-aliasing also belong to the text, not to the subject.
        ink = cv2.dilate((ink > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
        small = cv2.inpaint(small, ink, 3, cv2.INPAINT_TELEA)

    sal = saliency_map(small)
    sal8 = (sal * 255).astype(np.uint8)
    otsu, _ = cv2.threshold(sal8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    seed = sal8 > otsu
    mask = np.where(seed, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    mask[sal8 > min(254, otsu + 0.6 * (255 - otsu))] = cv2.GC_FGD  # the most salient core
    b = max(2, round(_BORDER * max(size)))
    frame = np.ones(mask.shape, dtype=bool)
    frame[b:-b, b:-b] = False
    mask[frame] = cv2.GC_BGD
    fg = seed
    if np.any(mask == cv2.GC_FGD) or np.any(mask == cv2.GC_PR_FGD):
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)
        cv2.grabCut(
            cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, _ITERATIONS, cv2.GC_INIT_WITH_MASK
        )
        cut = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        if 0.005 < cut.mean() < 0.95:  # a degenerate cut keeps the saliency seed instead
            fg = cut
    fg = _drop_small(fg, int(_MIN_COMPONENT * fg.size))
    prob = cv2.resize(_soft(fg), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(prob, 0.0, 1.0).astype(np.float32)
