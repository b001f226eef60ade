"""Layers fused from three inputs: the foreground probability, depth and the title ink.

Depth alone (the seed method in ``layers``) cannot say what the subject is: a monocular depth
map, neural or heuristic, is smooth across the subject's outline and puts printed text wherever
the picture behind it is. A segmentation network outlines the subject well but may stop inside
it (a rocket found, not the photograph it stands in), take the title as salient, or find
nothing. So each layer comes from the input that is strong for it:

- **title**: the glyph ink of the title lines (``text_ink``), always its own nearest layer;
- **subject**: the foreground mask (``p >= 0.5``) without the title ink and without the pieces
  that lie inside text boxes. Depth *extends* it only where depth is strong and agrees: the
  subject stands clearly nearer than the background (``_MIN_DEPTH_GAP``) and the mask's edge
  is not a depth edge (depth just outside the mask is as near as just inside), which means the
  network stopped inside a depth segment; then the near depth segments the mask touches join
  the subject. Where the network finds nothing, the nearest enclosed depth segment stands in;
- **the rest**: K-means over the rest's depth (K from its histogram's modes), farthest band
  ``background``, the others ``other``, ranked by depth.

Everything but the final composition runs at a long side of ``_WORK_LONG_SIDE``; the label map
is composed at full resolution from the full-resolution mask, ink and depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from poster_assets.vision.layers import depth_bands
from poster_assets.vision.roles import ROLE_BACKGROUND, ROLE_OTHER, ROLE_SUBJECT, ROLE_TITLE, LayerInfo
from poster_assets.vision.text_ink import as_box, boxes_mask, text_ink_mask
from poster_assets.vision.title import TitleChoice, ocr_boxes, title_box

SUBJECT_FOREGROUND = "foreground"  # the network's mask as it is
SUBJECT_EXTENDED = "foreground+depth"  # the mask grown to the depth segments it lies in
SUBJECT_DEPTH = "depth"  # no usable mask: the nearest enclosed depth segment
SUBJECT_NONE = "none"

_WORK_LONG_SIDE = 384
_MIN_SEED = 0.005  # of the poster: a smaller mask is "the network found nothing"
_MIN_PIECE = 0.001  # mask pieces smaller than this share of the poster are specks
_IN_TEXT = 0.5  # a mask piece with this share inside text boxes is text taken as salient
_MIN_DEPTH_GAP = 0.25  # subject depth - background depth (0..1) for depth to count as strong
_MAX_EDGE_STEP = 0.3  # depth drop across the mask edge, as a share of that gap: no depth edge
_MAX_RING_FAR = 0.5  # share of the ring around the mask that is on the background's side
_MAX_COVER = 0.6  # a depth segment the mask covers more of is the subject plus blur: keep the mask
_MAX_SEGMENT = 0.6  # of the poster: a bigger near segment is a ground plane, not a subject
_BORDER = 0.03  # of the short side: a frame along the poster's edges ...
_MAX_IN_FRAME = 0.02  # ... and a segment with more of its pixels in it is scenery, not a subject
_MIN_DEPTH_SUBJECT = 0.02  # of the poster: smallest segment depth alone may call the subject
_MAX_BANDS = 4  # depth bands of the rest (background and others)
_BIG_BAND = 0.10  # of the poster: a band this big can be the background


@dataclass
class FusedLayers:
    """The layers of one poster (index order = label value), its title and where the subject
    came from (``SUBJECT_*``)."""

    layers: list[LayerInfo]
    title: TitleChoice | None
    subject_source: str


def fuse_layers(
    rgb: np.ndarray,
    depth: np.ndarray,
    foreground: np.ndarray | None,
    ocr_items: Sequence[Any],
) -> FusedLayers:
    """Background, subject and title layers (plus depth bands) of one poster.

    ``depth``: float HxW in [0, 1], 1 = nearest; ``foreground``: probability (or bool mask) HxW,
    or None; ``ocr_items``: ``(box_or_polygon, text, confidence)`` for every text line found.
    """
    depth = np.asarray(depth, dtype=np.float32)
    shape = depth.shape
    items = list(ocr_items)
    title = title_box(items, shape)
    ink = text_ink_mask(rgb, title.lines) if title is not None else np.zeros(shape, bool)
    if title is not None and not ink.any():
        ink = boxes_mask(title.lines, shape)  # flat boxes: the whole box stands in for the ink
    subject, source = subject_mask(foreground, depth, ocr_boxes(items), ink)
    subject &= ~ink
    # Label map (uint8): bands 0..n-1 (0 = farthest), then the subject, then the title on top.
    labels, band_count = depth_bands(depth, ~(subject | ink), k_max=_MAX_BANDS)
    n = band_count
    subject_idx = title_idx = None
    if subject.any():
        subject_idx, n = n, n + 1
        np.copyto(labels, subject_idx, where=subject)  # ~10x a boolean-indexed assignment
    if ink.any():
        title_idx, n = n, n + 1
        np.copyto(labels, title_idx, where=ink)
    return FusedLayers(_describe(labels, n, depth, band_count, subject_idx, title_idx), title, source)


def subject_mask(
    foreground: np.ndarray | None,
    depth: np.ndarray,
    text_boxes: Sequence[Any],
    ink: np.ndarray,
) -> tuple[np.ndarray, str]:
    """(bool HxW subject mask, ``SUBJECT_*`` source): the foreground mask cleaned of text,
    extended by depth where depth is strong and agrees (see the module docstring).

    ``text_boxes``: every OCR box or polygon; ``ink``: the title's glyph pixels (bool HxW).
    Works at a long side of ``_WORK_LONG_SIDE``; the mask keeps the network's full-resolution
    edge, and grown parts take theirs from the full-resolution depth.
    """
    shape = depth.shape
    scale = min(1.0, _WORK_LONG_SIDE / max(shape))
    size = (max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale)))
    small_depth = cv2.resize(depth, size, interpolation=cv2.INTER_AREA)
    text = boxes_mask([[v * scale for v in as_box(b)] for b in text_boxes], small_depth.shape)
    frame = _frame(small_depth.shape)
    seed, small_seed = np.zeros(shape, bool), np.zeros(small_depth.shape, bool)
    if foreground is not None:
        fg = np.asarray(foreground)
        seed, small_seed = _drop_text_pieces((fg if fg.dtype == bool else fg >= 0.5) & ~ink, text, size)
    if np.count_nonzero(seed) < _MIN_SEED * seed.size:
        segment = _depth_only_segment(small_depth, text, frame)
        if segment is None:
            return np.zeros(shape, bool), SUBJECT_NONE
        return _grow_full(segment, depth, _otsu(small_depth[~text])), SUBJECT_DEPTH
    threshold = _extension_threshold(small_depth, small_seed, text)
    if threshold is None:
        return seed, SUBJECT_FOREGROUND
    near = (small_depth >= threshold) & ~text
    n, comp = cv2.connectedComponents(near.astype(np.uint8), connectivity=4)
    sizes = np.bincount(comp.ravel(), minlength=n)
    covered = np.bincount(comp.ravel(), weights=small_seed.ravel(), minlength=n)
    in_frame = np.bincount(comp.ravel(), weights=frame.ravel(), minlength=n)
    take = (
        (covered > 0)
        & (covered < _MAX_COVER * sizes)
        & (in_frame < _MAX_IN_FRAME * sizes)
        & (sizes < _MAX_SEGMENT * near.size)
    )
    take[0] = False  # component 0 is everything below the threshold
    if not take.any():
        return seed, SUBJECT_FOREGROUND
    return seed | _grow_full(take[comp], depth, threshold), SUBJECT_EXTENDED


def _extension_threshold(depth: np.ndarray, seed: np.ndarray, text: np.ndarray) -> float | None:
    """The depth above which pixels are on the subject's side, when depth is strong enough and
    agrees that the mask stopped inside a depth segment; None when it does not."""
    side = max(3, round(0.02 * max(depth.shape)) | 1)  # ~7 px at the work resolution
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    seed8 = seed.astype(np.uint8)
    grown = cv2.dilate(seed8, kernel).astype(bool)
    background = ~cv2.dilate(grown.astype(np.uint8), kernel).astype(bool) & ~text
    if background.sum() < 10 or seed.sum() < 10:
        return None
    subject_depth = float(np.median(depth[seed]))
    gap = subject_depth - float(np.median(depth[background]))
    if gap < _MIN_DEPTH_GAP:
        return None  # depth is weak (or puts the subject behind): the mask stands
    threshold = subject_depth - 0.5 * gap
    ring = grown & ~seed & ~text
    inner = seed & ~cv2.erode(seed8, kernel).astype(bool)
    if not ring.any() or not inner.any():
        return None
    step = (float(depth[inner].mean()) - float(depth[ring].mean())) / gap
    ring_far = float(np.mean(depth[ring] < threshold))
    if step >= _MAX_EDGE_STEP or ring_far >= _MAX_RING_FAR:
        return None  # the mask's edge is a depth edge: the network outlined the segment
    return threshold


def _depth_only_segment(depth: np.ndarray, text: np.ndarray, frame: np.ndarray) -> np.ndarray | None:
    """The biggest near (Otsu) depth segment, preferring one clear of the poster's frame; None
    when depth has no near segment of a subject's size (flat depth)."""
    if (~text).sum() < 10:
        return None
    near = (depth >= _otsu(depth[~text])) & ~text
    n, comp = cv2.connectedComponents(near.astype(np.uint8), connectivity=4)
    sizes = np.bincount(comp.ravel(), minlength=n)
    in_frame = np.bincount(comp.ravel(), weights=frame.ravel(), minlength=n)
    sized = (sizes >= _MIN_DEPTH_SUBJECT * near.size) & (sizes < _MAX_SEGMENT * near.size)
    sized[0] = False
    enclosed = sized & (in_frame < _MAX_IN_FRAME * sizes)
    # Every poster has a subject layer when depth allows one: a segment reaching the edge (a
    # subject cropped by the frame) rather than none.
    ok = enclosed if enclosed.any() else sized
    if not ok.any():
        return None
    return comp == int(np.argmax(np.where(ok, sizes, 0)))


def _otsu(values: np.ndarray) -> float:
    v8 = np.clip(values * 255.0, 0, 255).astype(np.uint8).reshape(-1, 1)
    t, _ = cv2.threshold(v8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t) / 255.0


def _grow_full(small: np.ndarray, depth: np.ndarray, threshold: float) -> np.ndarray:
    """A work-resolution segment at full resolution, its edge taken from the full depth map."""
    h, w = depth.shape
    up = cv2.resize(small.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return up & (depth >= threshold)


def _drop_text_pieces(
    mask: np.ndarray, text: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The mask without specks and without pieces lying mostly inside text boxes (salient
    title or credits that survived the ink carve-out: glyph halos, outlines, shadows), at full
    resolution and at the work resolution ``size`` (the size of ``text``).

    Pieces are found at the work resolution on the mask's footprint (any pixel set), so a
    full-resolution piece always lies inside one small piece.
    """
    share = cv2.resize(mask.view(np.uint8) * np.uint8(255), size, interpolation=cv2.INTER_AREA)
    footprint = share > 0
    n, comp, stats, _ = cv2.connectedComponentsWithStats(footprint.view(np.uint8), connectivity=8)
    sizes = stats[:, cv2.CC_STAT_AREA]
    in_text = np.bincount(comp.ravel(), weights=text.ravel(), minlength=n)
    keep = (in_text < _IN_TEXT * sizes) & (sizes >= _MIN_PIECE * footprint.size)
    keep[0] = False
    small = (share >= 128) & keep[comp]
    if keep[1:].all():
        return mask, small
    h, w = mask.shape
    kept = cv2.resize(keep[comp].view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    return mask & kept.view(bool), small


def _frame(shape: tuple[int, int]) -> np.ndarray:
    frame = np.zeros(shape, bool)
    b = max(1, round(_BORDER * min(shape)))
    frame[:b] = frame[-b:] = True
    frame[:, :b] = frame[:, -b:] = True
    return frame


def _describe(
    labels: np.ndarray,
    n: int,
    depth: np.ndarray,
    band_count: int,
    subject_idx: int | None,
    title_idx: int | None,
) -> list[LayerInfo]:
    """LayerInfos of a label map: areas, bboxes, mean depths, roles and depth ranks (0 =
    farthest). The background is the farthest band of ``_BIG_BAND`` or more (else the biggest);
    bands rank by mean depth; the subject stands in front of the background; the title is
    printed on top of everything."""
    masks = [labels == i for i in range(n)]
    counts = np.array([np.count_nonzero(m) for m in masks])
    areas = counts / labels.size
    # Mean depths from a grid sample at about the work resolution (a per-pixel float pass over
    # the full poster costs more than the rest of this function).
    step = max(1, max(labels.shape) // _WORK_LONG_SIDE)
    grid = labels[::step, ::step].ravel()
    sums = np.bincount(grid, weights=depth[::step, ::step].ravel(), minlength=n)
    seen = np.bincount(grid, minlength=n)
    means = np.where(seen > 0, sums / np.maximum(seen, 1), 0.0)
    for i in np.flatnonzero((seen == 0) & (counts > 0)):  # a layer thinner than the grid
        means[i] = float(depth[masks[i]].mean())
    bands = [i for i in range(band_count) if counts[i] > 0]
    roles = [ROLE_OTHER] * n
    if bands:
        big = [i for i in bands if areas[i] >= _BIG_BAND] or [max(bands, key=lambda i: counts[i])]
        roles[min(big, key=lambda i: means[i])] = ROLE_BACKGROUND
    key = means.astype(np.float64).copy()
    background = roles.index(ROLE_BACKGROUND) if ROLE_BACKGROUND in roles else None
    if subject_idx is not None:
        roles[subject_idx] = ROLE_SUBJECT
        if background is not None:
            key[subject_idx] = max(key[subject_idx], key[background] + 1e-6)
    if title_idx is not None:
        roles[title_idx] = ROLE_TITLE
        key[title_idx] = np.inf
    ranks = np.empty(n, dtype=int)
    ranks[np.argsort(key, kind="stable")] = np.arange(n)
    return [
        LayerInfo(
            index=i,
            depth_rank=int(ranks[i]),
            area_fraction=float(areas[i]),
            bbox=_bbox(masks[i]),
            role=roles[i],
            mask=masks[i],
            mean_depth=float(means[i]),
        )
        for i in range(n)
    ]


def _bbox(mask: np.ndarray) -> list[int]:
    """[x0, y0, x1, y1] of a mask's pixels ([0, 0, 0, 0] when empty), by OpenCV's vectorised
    scan of the 8-bit view."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    return [x, y, x + w, y + h]
