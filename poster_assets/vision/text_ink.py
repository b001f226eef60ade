"""Text boxes and the glyph ink inside them.

Titles are overlaid on the image, but a neural depth map (MiDaS does not separate printed text)
rarely gives them a plane of their own, so the title's pixels have to come from the image: per
text box, Otsu on the colour distance to the box's own border colour.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

Box = Sequence[int]  # [x0, y0, x1, y1], x1/y1 exclusive

_HOLE_HALF_WIDTH = 0.1  # of the line height: holes up to this thick are outlined strokes' fill


def as_box(box_or_polygon: Any) -> list[int]:
    """[x0, y0, x1, y1] from either a box or an OCR polygon [[x, y] * 4]."""
    arr = np.asarray(box_or_polygon, dtype=np.float64)
    if arr.ndim == 2:
        x0, y0 = np.floor(arr.min(axis=0))
        x1, y1 = np.ceil(arr.max(axis=0))
        return [int(x0), int(y0), int(x1), int(y1)]
    return [int(round(v)) for v in arr[:4]]


def _clip_box(box: Box, shape: tuple[int, ...], pad: int = 0) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    return max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)


def boxes_mask(boxes: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape[:2], dtype=bool)
    for b in boxes:
        x0, y0, x1, y1 = _clip_box(as_box(b), shape)
        mask[y0:y1, x0:x1] = True
    return mask


def text_ink_mask(rgb: np.ndarray, boxes: Sequence[Any], pad: int = 2) -> np.ndarray:
    """Glyph pixels inside ``boxes``: Otsu on the Lab distance to the box's border colour.

    The border of a text box is mostly the local background, so its main colours are the
    background whatever the text polarity (light on dark, dark on light, coloured on coloured).
    Two refinements: where the box also cuts through a thick non-text region (the subject behind
    the title) only pixels nearer the ink's colour than that region's colour are kept; and the
    fill of outlined letters (which may match the background) is recovered as stroke-thin holes.
    """
    mask = np.zeros(rgb.shape[:2], dtype=bool)
    for b in boxes:
        x0, y0, x1, y1 = _clip_box(as_box(b), rgb.shape, pad)
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        crop = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2LAB).astype(np.float32)
        frame = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
        dist = functools.reduce(np.minimum, [lab_distance(crop, c) for c in _border_colours(frame)])
        if dist.max() < 8.0:  # flat box: no ink to find
            continue
        dist8 = np.clip(dist * (255.0 / dist.max()), 0, 255).astype(np.uint8)
        thr, _ = cv2.threshold(dist8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        # Anti-aliased glyph edges sit between the classes; take half the Otsu level for them.
        ink = dist8 > max(thr * 0.5, 255.0 * 8.0 / dist.max())
        line_h = min(y1 - y0, x1 - x0)
        ink = _drop_thick_regions(ink, crop, dist8 > thr, line_h)
        ink = _fill_stroke_holes(ink, line_h)
        mask[y0:y1, x0:x1] |= ink
    return mask


def _border_colours(frame: np.ndarray, k: int = 3, min_share: float = 0.3) -> list[np.ndarray]:
    """The main colours of a box's border (a title may straddle backdrop and subject).

    Clusters holding under ``min_share`` of the border are left out: they are mostly glyph
    pixels touching the box edge.
    """
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    cv2.setRNGSeed(0)  # cv2.kmeans draws from OpenCV's global RNG; keep the output repeatable
    _, assigned, centres = cv2.kmeans(frame, min(k, len(frame)), None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    shares = np.bincount(assigned.ravel(), minlength=len(centres)) / len(assigned)
    kept = [centres[i] for i in range(len(centres)) if shares[i] >= min_share]
    return kept or [np.median(frame, axis=0)]


def _drop_thick_regions(ink: np.ndarray, lab: np.ndarray, strong: np.ndarray, line_h: int) -> np.ndarray:
    """Glyph strokes are thin (half-width ~0.1 line height); blobs thicker than that are scenery."""
    u8 = ink.astype(np.uint8)
    dt = cv2.distanceTransform(u8, cv2.DIST_L2, 3)
    r = max(2, round(0.25 * line_h))
    core = (dt > r).astype(np.uint8)
    if not core.any():
        return ink
    blob = (
        cv2.dilate(core, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 3, 2 * r + 3))).astype(bool)
        & ink
    )
    thin = ink & ~blob & strong
    if np.count_nonzero(thin) < 20:
        return ink
    ink_colour = np.median(lab[thin], axis=0)
    blob_colour = np.median(lab[blob], axis=0)
    nearer_ink = lab_distance(lab, ink_colour) < lab_distance(lab, blob_colour)
    return ink & (~blob | nearer_ink)


def lab_distance(lab: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel of ``lab`` (HxWx3 float32) to ``colour``: the values of
    ``np.linalg.norm(lab - colour, axis=2)``, channel by channel (a reduction over a length-3
    last axis is several times slower in NumPy)."""
    d = lab - colour
    d *= d
    return np.sqrt(d[..., 0] + d[..., 1] + d[..., 2])


def enclosed_holes(mask: np.ndarray) -> np.ndarray:
    """The pixels off ``mask`` that no 4-connected path of off pixels joins to the border:
    ``ndimage.binary_fill_holes(mask) & ~mask``, by one flood fill (several times faster)."""
    h, w = mask.shape
    outside = np.zeros((h + 2, w + 2), np.uint8)  # a free frame, so the fill reaches every border pixel
    outside[1:-1, 1:-1] = mask
    cv2.floodFill(outside, None, (0, 0), 1, flags=4)
    return outside[1:-1, 1:-1] == 0


def _fill_stroke_holes(ink: np.ndarray, line_h: int) -> np.ndarray:
    """Fill enclosed holes as thin as a stroke (outlined letters' fill), not rounder counters."""
    holes = enclosed_holes(ink)
    if not holes.any():
        return ink
    n, comp = cv2.connectedComponents(holes.astype(np.uint8), connectivity=4)
    dt = cv2.distanceTransform(holes.astype(np.uint8), cv2.DIST_L2, 3)
    widest = np.zeros(n, dtype=np.float32)
    np.maximum.at(widest, comp[holes], dt[holes])  # ndimage.maximum sorts every pixel: slower
    fill = widest <= _HOLE_HALF_WIDTH * line_h
    fill[0] = False
    return ink | fill[comp]
