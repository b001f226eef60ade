"""Depth-histogram layers of a poster, and which layer is the title, the subject, the background.

The seed method: K-means over the (relative) depth, K from the modes of a smoothed depth
histogram, edges cleaned by SLIC superpixels, layers ordered by depth rank (0 = farthest).

The title layer. Titles are overlaid on the image, so they are the nearest plane, but a thin
glyph plane does not survive K-means on a neural depth map (MiDaS does not separate printed
text) nor the superpixel clean-up. So ``assign_roles`` uses a depth layer as the title layer
only when that layer *is* the title (it holds most of the title ink and lies mostly inside the
title boxes); otherwise it carves a dedicated nearest layer out of the title ink pixels, found
per title box by Otsu on the colour distance to the box's own border colour. The measure that
counts is the share of ground-truth title glyph pixels inside the title layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy import ndimage
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks
from sklearn.cluster import KMeans

Box = Sequence[int]  # [x0, y0, x1, y1], x1/y1 exclusive
ROLE_TITLE = "title"
ROLE_SUBJECT = "subject"
ROLE_BACKGROUND = "background"
ROLE_OTHER = "other"

_WORK_LONG_SIDE = 384  # K-means / SLIC resolution; labels are upsampled with nearest
_KMEANS_BINS = 1024  # depth is stored as 16-bit; 1/1024 is far below any layer gap
_TITLE_LINE_MIN_CONF = 0.7  # a garbled read (halftone dots as 'wwww') must not join the title
_FIT_SAMPLES = 20_000  # K-means fit sample; predicting all pixels is cheap
_MIN_PROMINENCE = 0.08  # of the highest smoothed-histogram peak
_BIG_LAYER = 0.10  # a background candidate covers at least this share of the poster
_TITLE_OWNED = 0.8  # a depth layer is the title when this share of it lies in the title boxes
_TITLE_COVERED = 0.8  # ... and it holds this share of the title ink
_HOLE_HALF_WIDTH = 0.1  # of the line height: holes up to this thick are outlined strokes' fill


@dataclass
class LayerSplit:
    """Per-pixel layer labels (int32 HxW, 0 = farthest) and per-layer depth statistics."""

    labels: np.ndarray
    k: int
    mean_depths: list[float]
    modes: list[float]
    depth: np.ndarray | None = field(default=None, repr=False)


@dataclass
class LayerInfo:
    index: int
    depth_rank: int  # 0 = farthest
    area_fraction: float
    bbox: list[int]  # [x0, y0, x1, y1] of the layer's pixels, or [0, 0, 0, 0] when empty
    role: str
    mask: np.ndarray = field(repr=False)
    mean_depth: float


@dataclass
class TitleChoice:
    """The most prominent text: its line boxes (1-2 lines merged), their union and text."""

    box: list[int]
    lines: list[list[int]]
    text: str
    score: float


# --- boxes and text ink ------------------------------------------------------------------


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
        dist = np.min([np.linalg.norm(crop - c, axis=2) for c in _border_colours(frame)], axis=0)
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
    nearer_ink = np.linalg.norm(lab - ink_colour, axis=2) < np.linalg.norm(lab - blob_colour, axis=2)
    return ink & (~blob | nearer_ink)


def _fill_stroke_holes(ink: np.ndarray, line_h: int) -> np.ndarray:
    """Fill enclosed holes as thin as a stroke (outlined letters' fill), not rounder counters."""
    holes = ndimage.binary_fill_holes(ink) & ~ink
    if not holes.any():
        return ink
    n, comp = cv2.connectedComponents(holes.astype(np.uint8), connectivity=4)
    dt = cv2.distanceTransform(holes.astype(np.uint8), cv2.DIST_L2, 3)
    widest = np.zeros(n, dtype=np.float32)
    np.maximum.at(widest, comp[holes], dt[holes])  # ndimage.maximum sorts every pixel: slower
    fill = widest <= _HOLE_HALF_WIDTH * line_h
    fill[0] = False
    return ink | fill[comp]


# --- title choice -------------------------------------------------------------------------


def _ocr_fields(item: Any) -> tuple[list[int], str, float]:
    if isinstance(item, dict):
        box = item.get("box", item.get("polygon"))
        return as_box(box), str(item.get("text", "")), float(item.get("confidence", item.get("score", 1.0)))
    box, text, conf = item
    return as_box(box), str(text), float(conf)


def _title_score(box: list[int], text: str, conf: float, shape: tuple[int, ...]) -> float:
    """Big, confident, horizontally centred text with a few letters scores high."""
    h, w = shape[:2]
    bh, bw = max(1, box[3] - box[1]), max(1, box[2] - box[0])
    letters = sum(c.isalnum() for c in text)
    if letters == 0:
        return 0.0
    centred = 1.0 - min(1.0, abs((box[0] + box[2]) / 2 / w - 0.5) * 2)
    width_share = min(1.0, bw / w / 0.3)  # a one-letter fleck is not a title
    return conf * (bh / h) * (0.7 + 0.3 * centred) * (0.5 + 0.5 * width_share) * min(1.0, letters / 3)


def _same_row(a: list[int], b: list[int]) -> bool:
    """b continues a's line to the right: the detector often boxes a title word by word."""
    ha, hb = a[3] - a[1], b[3] - b[1]
    if ha <= 0 or hb <= 0 or not (0.7 <= hb / ha <= 1.4):
        return False
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    gap = b[0] - a[2]
    return overlap >= 0.6 * min(ha, hb) and -0.5 * min(ha, hb) <= gap <= 1.0 * max(ha, hb)


def _join_words(items: list[tuple[list[int], str, float]]) -> list[tuple[list[int], str, float]]:
    """Merge boxes that sit side by side on one row into one line (left to right)."""
    rest = sorted(items, key=lambda it: it[0][0])
    lines: list[tuple[list[int], str, float]] = []
    while rest:
        box, text, conf = rest.pop(0)
        merged = True
        while merged:
            merged = False
            for i, (b, t, c) in enumerate(rest):
                if _same_row(box, b):
                    box = [min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3])]
                    text, conf = f"{text.strip()} {t.strip()}", min(conf, c)
                    rest.pop(i)
                    merged = True
                    break
        lines.append((box, text, conf))
    return lines


def _same_line_family(a: list[int], b: list[int]) -> bool:
    """b can continue a's title: similar height, similar x-centre, vertically adjacent."""
    ha, hb = a[3] - a[1], b[3] - b[1]
    if ha <= 0 or hb <= 0 or not (0.6 <= hb / ha <= 1.6):
        return False
    wa = a[2] - a[0]
    tol = 0.5 * min(ha, hb)
    centred = abs((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) <= max(0.25 * max(wa, b[2] - b[0]), 0.5 * ha)
    # Left- or right-aligned title blocks are as common as centred ones.
    if not (centred or abs(a[0] - b[0]) <= tol or abs(a[2] - b[2]) <= tol):
        return False
    gap = max(b[1] - a[3], a[1] - b[3])
    return gap <= 0.8 * max(ha, hb)


def title_box(ocr_items: Sequence[Any], image_shape: tuple[int, ...]) -> TitleChoice | None:
    """Pick the title among OCR items ``(box_or_polygon, text, confidence)`` (or dicts).

    The best-scoring box is the title's first line; vertically adjacent boxes of similar height
    and x-centre join it (two-line titles), reading top to bottom.
    """
    items = _join_words([_ocr_fields(it) for it in ocr_items])
    scored = [(_title_score(b, t, c, image_shape), b, t, c) for b, t, c in items]
    scored = [s for s in scored if s[0] > 0]
    confs = [s[3] for s in scored]
    if not scored:
        return None
    best_i = max(range(len(scored)), key=lambda i: scored[i][0])
    chosen = [best_i]
    grew = True
    while grew:  # grow one line at a time, above or below the current block
        grew = False
        for i, (_, b, _t, _c) in enumerate(scored):
            if i in chosen or confs[i] < _TITLE_LINE_MIN_CONF:
                continue
            if any(_same_line_family(scored[j][1], b) for j in chosen):
                chosen.append(i)
                grew = True
    chosen.sort(key=lambda i: scored[i][1][1])
    lines = [list(scored[i][1]) for i in chosen]
    corners = np.array(lines)
    union = [int(v) for v in (*corners[:, :2].min(axis=0), *corners[:, 2:].max(axis=0))]
    text = " ".join(scored[i][2].strip() for i in chosen)
    return TitleChoice(box=union, lines=lines, text=text, score=float(scored[best_i][0]))


# --- histogram modes and K ----------------------------------------------------------------


def depth_modes(depth: np.ndarray, bins: int = 64, min_prominence: float = _MIN_PROMINENCE) -> list[float]:
    """Depth values at the peaks of a smoothed histogram, ascending.

    A peak counts when its prominence is at least ``min_prominence`` of the highest peak, so
    the ripples of a broad mode do not each become a layer.
    """
    hist, edges = np.histogram(np.clip(depth, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    smooth = gaussian_filter1d(hist.astype(np.float64), sigma=1.0, mode="constant")
    if smooth.max() <= 0:
        return []
    # Zero-pad so peaks in the first or last bin (a flat far or near plane) are found too.
    padded = np.concatenate([[0.0], smooth, [0.0]])
    peaks, _ = find_peaks(padded, prominence=min_prominence * smooth.max())
    centres = (edges[:-1] + edges[1:]) / 2
    return [float(centres[p - 1]) for p in peaks]


def choose_k(depth: np.ndarray, default: int = 3, k_min: int = 2, k_max: int = 6) -> int:
    """K = number of histogram modes, within [k_min, k_max]; ``default`` for a unimodal depth."""
    n = len(depth_modes(depth))
    if n <= 1:
        return default
    return int(np.clip(n, k_min, k_max))


# --- split --------------------------------------------------------------------------------


def _work_scale(shape: tuple[int, ...]) -> float:
    return min(1.0, _WORK_LONG_SIDE / max(shape[:2]))


def _resize(img: np.ndarray, size_wh: tuple[int, int], nearest: bool = False) -> np.ndarray:
    if img.shape[1] == size_wh[0] and img.shape[0] == size_wh[1]:
        return img
    return cv2.resize(img, size_wh, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def _superpixel_majority(labels: np.ndarray, image: np.ndarray, k: int) -> np.ndarray:
    """Replace each SLIC superpixel's labels by their majority, so layer edges follow the image."""
    from skimage.segmentation import slic  # skimage import is slow; only pay for it here

    n_segments = max(50, labels.size // 150)
    channel_axis = -1 if image.ndim == 3 else None
    segments = slic(
        image,
        n_segments=n_segments,
        max_num_iter=5,  # edges settle in a few iterations; the default 10 doubles the cost
        compactness=10.0 if image.ndim == 3 else 0.1,
        start_label=0,
        channel_axis=channel_axis,
    )
    counts = np.zeros((segments.max() + 1, k), dtype=np.int64)
    np.add.at(counts, (segments.ravel(), labels.ravel()), 1)
    return counts.argmax(axis=1)[segments].astype(np.int32)


def split_layers(
    depth: np.ndarray,
    rgb: np.ndarray | None = None,
    k: int | None = None,
    use_position: bool = False,
    superpixels: bool = True,
    seed: int = 0,
) -> LayerSplit:
    """K-means over depth (optionally with x, y) into K layers, 0 = farthest.

    Works at a long side of 384 px and upsamples the labels. When the number of histogram
    modes equals K the modes seed the centres, so the layers sit on the histogram's peaks.
    """
    depth = np.asarray(depth, dtype=np.float32)
    h, w = depth.shape
    modes = depth_modes(depth)
    k = k or choose_k(depth)
    s = _work_scale(depth.shape)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = _resize(depth, size)
    feats = [small.reshape(-1, 1)]
    if use_position:
        yy, xx = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float32)
        # Position weighs less than depth: it only breaks ties within a depth band.
        feats += [0.3 * (xx / size[0]).reshape(-1, 1), 0.3 * (yy / size[1]).reshape(-1, 1)]
    x = np.hstack(feats)
    k = int(min(k, max(1, len(np.unique(small)))))
    if len(modes) == k and not use_position:
        km = KMeans(
            n_clusters=k, init=np.array(modes, dtype=np.float64).reshape(-1, 1), n_init=1, random_state=seed
        )
    else:
        km = KMeans(n_clusters=k, n_init=3, random_state=seed)
    x = x.astype(np.float64)
    if use_position:
        # Fit on a fixed subsample (the histogram is what matters), then label every pixel.
        fit_rows = np.random.default_rng(seed).choice(len(x), min(len(x), _FIT_SAMPLES), replace=False)
        raw = km.fit(x[fit_rows]).predict(x)
    else:
        # Depth alone is 1-D: K-means over a fine histogram, weighted by counts, is the same
        # problem at 1/1000 of the cost; pixels then take the nearest centre.
        counts, edges = np.histogram(x[:, 0], bins=_KMEANS_BINS, range=(0.0, 1.0))
        centres = ((edges[:-1] + edges[1:]) / 2)[counts > 0].reshape(-1, 1)
        km.fit(centres, sample_weight=counts[counts > 0].astype(np.float64))
        raw = np.abs(x[:, :1] - km.cluster_centers_.reshape(1, -1)).argmin(axis=1)
    # Order layers by mean depth: rank 0 = farthest = smallest inverse depth.
    flat = small.reshape(-1)
    means = np.array([flat[raw == c].mean() if np.any(raw == c) else 0.0 for c in range(k)])
    order = np.argsort(means)
    rank = np.empty(k, dtype=np.int32)
    rank[order] = np.arange(k, dtype=np.int32)
    labels_small = rank[raw].reshape(small.shape)
    if superpixels and k > 1:
        guide = _resize(rgb, size) if rgb is not None else small
        labels_small = _superpixel_majority(labels_small, guide, k)
    labels = _resize(labels_small.astype(np.uint8), (w, h), nearest=True).astype(np.int32)
    mean_depths = [
        float(depth[labels == i].mean()) if np.any(labels == i) else float(means[order[i]]) for i in range(k)
    ]
    return LayerSplit(labels=labels, k=k, mean_depths=mean_depths, modes=modes, depth=depth)


# --- roles --------------------------------------------------------------------------------


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
