"""Depth-histogram layers of a poster: the depth split into K planes, 0 = farthest.

``depth_bands`` splits the depth of some of a poster's pixels into bands (1-D K-means over the
histogram, K from its modes); ``fusion`` uses it for what is neither subject nor title.

``split_layers`` is the seed method (``layers:kmeans-slic-v2``), kept as the baseline the
benchmarks compare against: K-means over the whole depth map, K from the modes of a smoothed
depth histogram, edges cleaned by SLIC superpixels; ``roles.assign_roles`` then names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

_WORK_LONG_SIDE = 384  # K-means / SLIC resolution; labels are upsampled with nearest
_KMEANS_BINS = 1024  # depth is stored as 16-bit; 1/1024 is far below any layer gap
_FIT_SAMPLES = 20_000  # K-means fit sample; predicting all pixels is cheap
_MIN_PROMINENCE = 0.08  # of the highest smoothed-histogram peak


@dataclass
class LayerSplit:
    """Per-pixel layer labels (int32 HxW, 0 = farthest) and per-layer depth statistics."""

    labels: np.ndarray
    k: int
    mean_depths: list[float]
    modes: list[float]
    depth: np.ndarray | None = field(default=None, repr=False)


def depth_modes(depth: np.ndarray, bins: int = 64, min_prominence: float = _MIN_PROMINENCE) -> list[float]:
    """Depth values at the peaks of a smoothed histogram, ascending.

    A peak counts when its prominence is at least ``min_prominence`` of the highest peak, so
    the ripples of a broad mode do not each become a layer.
    """
    hist, _ = np.histogram(np.clip(depth, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    return histogram_modes(hist, min_prominence)


def histogram_modes(hist: np.ndarray, min_prominence: float = _MIN_PROMINENCE) -> list[float]:
    """``depth_modes`` of a histogram over [0, 1] (equal bins): the depths of its peaks."""
    smooth = gaussian_filter1d(np.asarray(hist, dtype=np.float64), sigma=1.0, mode="constant")
    if smooth.max() <= 0:
        return []
    # Zero-pad so peaks in the first or last bin (a flat far or near plane) are found too.
    padded = np.concatenate([[0.0], smooth, [0.0]])
    peaks = prominent_peaks(padded, min_prominence * smooth.max())
    centres = (np.arange(len(hist)) + 0.5) / len(hist)
    return [float(centres[p - 1]) for p in peaks]


def prominent_peaks(x: np.ndarray, min_prominence: float) -> list[int]:
    """Indices of the peaks of ``x`` whose prominence is at least ``min_prominence``: what
    ``scipy.signal.find_peaks(x, prominence=min_prominence)`` returns (a flat top counts once,
    at its middle; the ends are never peaks).

    Written out because importing scipy.signal takes most of a second, in every process that
    extracts, for a search over 66 numbers."""
    peaks, i, last = [], 1, len(x) - 1
    while i < last:
        if x[i - 1] < x[i]:
            ahead = i + 1
            while ahead < last and x[ahead] == x[i]:
                ahead += 1
            if x[ahead] < x[i]:
                peaks.append((i + ahead - 1) // 2)
                i = ahead
        i += 1
    return [p for p in peaks if _prominence(x, p) >= min_prominence]


def _prominence(x: np.ndarray, peak: int) -> float:
    """Height of ``peak`` over the higher of the lowest points on either side before the signal
    rises above it (or ends)."""
    left = right = peak
    while left > 0 and x[left - 1] <= x[peak]:
        left -= 1
    while right < len(x) - 1 and x[right + 1] <= x[peak]:
        right += 1
    return float(x[peak] - max(x[left : peak + 1].min(), x[peak : right + 1].min()))


def choose_k(depth: np.ndarray, default: int = 3, k_min: int = 2, k_max: int = 6) -> int:
    """K = number of histogram modes, within [k_min, k_max]; ``default`` for a unimodal depth."""
    n = len(depth_modes(depth))
    if n <= 1:
        return default
    return int(np.clip(n, k_min, k_max))


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
    from sklearn.cluster import KMeans  # deferred, as find_peaks is

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


def depth_bands(depth: np.ndarray, mask: np.ndarray, k_max: int = 4) -> tuple[np.ndarray, int]:
    """Depth bands of the pixels under ``mask``: (uint8 HxW band of every pixel, band count).

    1-D K-means over the masked depth's histogram, K = its modes (1 when unimodal, at most
    ``k_max``), started from the modes; every pixel, masked or not, then takes the band whose
    depth range holds it (K - 1 comparisons per pixel). The histogram comes from a grid sample
    at about ``_WORK_LONG_SIDE`` px. Bands are numbered from the farthest (0); an empty
    ``mask`` gives no bands.
    """
    if not mask.any():
        return np.zeros(depth.shape, np.uint8), 0
    step = max(1, max(depth.shape) // _WORK_LONG_SIDE)
    sample = depth[::step, ::step][mask[::step, ::step]]
    if sample.size == 0:  # a few pixels between the grid's
        sample = depth[mask]
    counts, _ = np.histogram(sample, bins=_KMEANS_BINS, range=(0.0, 1.0))
    # Modes on the 64-bin histogram that depth_modes uses (1024 / 16 = 64).
    modes = histogram_modes(counts.reshape(64, -1).sum(axis=1))
    occupied = counts > 0
    values = ((np.arange(_KMEANS_BINS) + 0.5) / _KMEANS_BINS)[occupied]
    k = int(np.clip(len(modes), 1, min(k_max, len(values))))
    if k == 1:
        return np.zeros(depth.shape, np.uint8), 1
    centres = kmeans_1d(values, counts[occupied].astype(np.float64), k, modes if len(modes) == k else None)
    bounds = (centres[1:] + centres[:-1]) / 2
    bands = np.zeros(depth.shape, np.uint8)  # a label map: 8 bits, a quarter of int32's passes
    for b in bounds:
        bands += depth > b
    return bands, len(centres)


def kmeans_1d(
    values: np.ndarray, weights: np.ndarray, k: int, init: list[float] | None = None, iterations: int = 100
) -> np.ndarray:
    """Weighted K-means of scalars (Lloyd), ascending centres without empty clusters.

    Written out because on a few hundred histogram bins scikit-learn's KMeans spends its time
    starting OpenMP threads: 3-270 ms a call on a loaded 2-core machine, against 0.1 ms here.
    Starts from ``init`` or from K weighted quantiles.
    """
    if init is None:
        cdf = np.cumsum(weights) / weights.sum()
        at = np.searchsorted(cdf, (np.arange(k) + 0.5) / k)
        init = [float(v) for v in values[np.minimum(at, len(values) - 1)]]
    centres = np.array(sorted(init), dtype=np.float64)
    for _ in range(iterations):
        assigned = np.abs(values[:, None] - centres[None, :]).argmin(axis=1)
        mass = np.bincount(assigned, weights=weights, minlength=len(centres))
        moments = np.bincount(assigned, weights=weights * values, minlength=len(centres))
        updated = np.where(mass > 0, moments / np.maximum(mass, 1e-12), centres)
        if np.allclose(updated, centres, atol=1e-6):
            break
        centres = updated
    assigned = np.abs(values[:, None] - centres[None, :]).argmin(axis=1)
    used = np.unique(assigned)
    return np.sort(centres[used])
