"""What each extractor stores for one poster: its rows and blob files (no Dagster here)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from poster_assets.extract.runner import PosterRef, Rows
from poster_assets.extract.versions import LAYERS_METHOD
from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.codecs import MASK_THRESHOLD, encode_depth, encode_labels, encode_mask, mask_bbox
from poster_assets.vision.fusion import fuse_layers
from poster_assets.vision.layers import depth_modes
from poster_assets.vision.roles import LayerInfo, labels_from_layers
from poster_assets.vision.title import TitleChoice

HIST_BINS = 32


def version_slug(version: str) -> str:
    """A folder-safe, bounded form of a version string for blob paths."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", version)[:48]
    return f"{slug}-{hashlib.sha1(version.encode()).hexdigest()[:8]}"


def ocr_rows(ref: PosterRef, items: Sequence[Any], version: str) -> Rows:
    return {
        "ocr_text": [
            {
                "poster_id": ref.poster_id,
                "model_version": version,
                "line_index": item.order,
                "text": item.text,
                "confidence": float(item.confidence),
                "polygon": [float(v) for pt in item.polygon for v in pt],
                "box": item.box,
            }
            for item in items
        ]
    }


def depth_rows(ref: PosterRef, depth: np.ndarray, version: str, blobs: BlobStore) -> Rows:
    lo, hi = float(depth.min()), float(depth.max())
    norm = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
    path = blobs.write_bytes(f"depth/{version_slug(version)}", ref.poster_id, ".png", encode_depth(norm))
    hist, _ = np.histogram(norm, bins=HIST_BINS, range=(0.0, 1.0))
    return {
        "depth_maps": [
            {
                "poster_id": ref.poster_id,
                "model_version": version,
                "depth_path": path,
                "width": int(depth.shape[1]),
                "height": int(depth.shape[0]),
                "depth_min": lo,
                "depth_max": hi,
                "depth_mean": float(norm.mean()),
                "histogram": (hist / max(1, hist.sum())).tolist(),
                "modes": [float(m) for m in depth_modes(norm)],
            }
        ]
    }


def foreground_rows(ref: PosterRef, prob: np.ndarray, version: str, blobs: BlobStore) -> Rows:
    path = blobs.write_bytes(f"foreground/{version_slug(version)}", ref.poster_id, ".png", encode_mask(prob))
    mask = prob >= MASK_THRESHOLD
    return {
        "foreground_masks": [
            {
                "poster_id": ref.poster_id,
                "model_version": version,
                "mask_path": path,
                "area_fraction": float(mask.mean()),
                "bbox": mask_bbox(mask),
                "mean_probability": float(prob.mean()),
            }
        ]
    }


def compute_layers(
    rgb: np.ndarray,
    depth: np.ndarray,
    foreground: np.ndarray,
    ocr_items: Sequence[tuple[list[int], str, float]],
) -> tuple[list[LayerInfo], TitleChoice | None]:
    """The layers (``LAYERS_METHOD``: depth, foreground and title ink fused) and the title."""
    fused = fuse_layers(rgb, depth, foreground, list(ocr_items))
    return fused.layers, fused.title


def layer_rows(
    ref: PosterRef,
    layers: Sequence[LayerInfo],
    title: TitleChoice | None,
    versions: dict[str, str],
    blobs: BlobStore,
) -> Rows:
    labels = encode_labels(labels_from_layers(layers))
    path = blobs.write_bytes(f"layers/{version_slug(versions['layers'])}", ref.poster_id, ".png", labels)
    return {
        "layer_masks": [
            {
                "poster_id": ref.poster_id,
                "model_version": versions["layers"],
                "layer_index": layer.index,
                "depth_rank": layer.depth_rank,
                "role": layer.role,
                "area_fraction": float(layer.area_fraction),
                "bbox": [int(v) for v in layer.bbox],
                "mean_depth": float(layer.mean_depth),
                "k": len(layers),
                "title_text": title.text if (title and layer.role == "title") else None,
                "title_box": [int(v) for v in title.box] if (title and layer.role == "title") else None,
                "labels_path": path,
                "method_version": LAYERS_METHOD,
                "depth_version": versions["depth"],
                "foreground_version": versions["foreground"],
                "ocr_version": versions["ocr"],
            }
            for layer in layers
        ]
    }
