"""Layer roles (title, subject, background, other), ``LayerInfo``, and the seed method's naming.

The product's layers come from ``fusion`` (which names its layers itself); ``assign_roles``
names the layers of the seed method (``layers.split_layers``), kept as the benchmarks' baseline.

Titles are overlaid on the image, so they are the nearest plane, but a thin glyph plane does
not survive K-means on a neural depth map (MiDaS does not separate printed text) nor the
superpixel clean-up. So ``assign_roles`` uses a depth layer as the title layer only when that
layer *is* the title (it holds most of the title ink and lies mostly inside the title boxes);
otherwise it carves a dedicated nearest layer out of the title ink pixels (see ``text_ink``).
The measure that counts is the share of ground-truth title glyph pixels inside the title layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poster_assets.vision.layers import LayerSplit
from poster_assets.vision.text_ink import boxes_mask, text_ink_mask
from poster_assets.vision.title import title_box

ROLE_TITLE = "title"
ROLE_SUBJECT = "subject"
ROLE_BACKGROUND = "background"
ROLE_OTHER = "other"

_BIG_LAYER = 0.10  # a background candidate covers at least this share of the poster
_TITLE_OWNED = 0.8  # a depth layer is the title when this share of it lies in the title boxes
_TITLE_COVERED = 0.8  # ... and it holds this share of the title ink


@dataclass
class LayerInfo:
    index: int
    depth_rank: int  # 0 = farthest
    area_fraction: float
    bbox: list[int]  # [x0, y0, x1, y1] of the layer's pixels, or [0, 0, 0, 0] when empty
    role: str
    mask: np.ndarray = field(repr=False)
    mean_depth: float


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def assign_roles(
    split: LayerSplit,
    text_boxes_with_conf: Sequence[Any],
    foreground: np.ndarray | None,
    rgb: np.ndarray | None = None,
) -> list[LayerInfo]:
    """Name the layers: one ``title``, one ``subject``, one ``background``, the rest ``other``.

    ``text_boxes_with_conf``: OCR items ``(box_or_polygon, text, confidence)``. With ``rgb`` the
    title ink is found inside the title boxes; without it the whole boxes stand in for the ink.
    If no depth layer is the title (see the module docstring) the ink becomes its own nearest
    layer, cut out of the layers beneath. ``foreground``: probability or bool mask, or None.
    """
    labels = split.labels.copy()
    shape = labels.shape
    n = split.k
    mean_depths = list(split.mean_depths)
    title_idx: int | None = None
    choice = title_box(text_boxes_with_conf, shape)
    if choice is not None:
        in_boxes = boxes_mask(choice.lines, shape)
        ink = text_ink_mask(rgb, choice.lines) if rgb is not None else in_boxes
        if not ink.any():
            ink = in_boxes
        per_layer = np.bincount(labels[ink], minlength=n)
        best = int(per_layer.argmax())
        layer = labels == best
        covered = per_layer[best] / max(1, int(ink.sum()))
        owned = np.count_nonzero(layer & in_boxes) / max(1, int(layer.sum()))
        if covered >= _TITLE_COVERED and owned >= _TITLE_OWNED:
            title_idx = best
        else:
            labels[ink] = n
            title_depth = float(split.depth[ink].mean()) if split.depth is not None else 1.0
            mean_depths.append(max(title_depth, max(mean_depths) + 1e-3))
            title_idx = n
            n += 1
    # Depth rank by mean depth; a carved title is always nearest (it is printed on top).
    order = np.argsort(mean_depths, kind="stable")
    ranks = np.empty(n, dtype=int)
    ranks[order] = np.arange(n)
    masks = [labels == i for i in range(n)]
    areas = [float(m.mean()) for m in masks]
    roles = [ROLE_OTHER] * n
    if title_idx is not None:
        roles[title_idx] = ROLE_TITLE
    candidates = [i for i in range(n) if i != title_idx and areas[i] > 0]
    subject_idx: int | None = None
    if candidates:
        if foreground is not None:
            fg = np.asarray(foreground) > 0.5 if foreground.dtype != bool else foreground
            ious = [
                np.count_nonzero(masks[i] & fg) / max(1, np.count_nonzero(masks[i] | fg)) for i in candidates
            ]
            if max(ious) > 0:
                subject_idx = candidates[int(np.argmax(ious))]
        if subject_idx is None:  # no foreground to go by: the nearest sizeable layer
            sizeable = [i for i in candidates if areas[i] >= 0.02] or candidates
            subject_idx = max(sizeable, key=lambda i: ranks[i])
        roles[subject_idx] = ROLE_SUBJECT
    rest = [i for i in candidates if i != subject_idx]
    if rest:
        big = [i for i in rest if areas[i] >= _BIG_LAYER] or rest
        roles[min(big, key=lambda i: ranks[i])] = ROLE_BACKGROUND
    return [
        LayerInfo(
            index=i,
            depth_rank=int(ranks[i]),
            area_fraction=areas[i],
            bbox=_bbox(masks[i]),
            role=roles[i],
            mask=masks[i],
            mean_depth=float(mean_depths[i]),
        )
        for i in range(n)
    ]


def labels_from_layers(layers: Sequence[LayerInfo]) -> np.ndarray:
    """int32 HxW layer index per pixel (the inverse of ``assign_roles``' masks)."""
    labels = np.zeros(layers[0].mask.shape, dtype=np.int32)
    for info in layers:
        labels[info.mask] = info.index
    return labels
