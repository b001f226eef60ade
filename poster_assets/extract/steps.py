"""What each extractor computes and stores for one poster (no Dagster here)."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from poster_assets.extract.runner import PosterRef, Rows
from poster_assets.storage.blobs import BlobStore
from poster_assets.vision.layers import (
    LayerInfo,
    TitleChoice,
    assign_roles,
    depth_modes,
    labels_from_layers,
    split_layers,
    title_box,
)

LAYERS_METHOD_VERSION = "layers:kmeans-slic-v2"
HIST_BINS = 32


def version_slug(version: str) -> str:
    """A folder-safe, bounded form of a version string for blob paths."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", version)[:48]
    return f"{slug}-{hashlib.sha1(version.encode()).hexdigest()[:8]}"


def layers_version(depth_version: str, fg_version: str, ocr_version: str) -> str:
    """Layers change when their method or any input changes; the inputs are also kept per row."""
    inputs = hashlib.sha1(f"{depth_version}|{fg_version}|{ocr_version}".encode()).hexdigest()[:12]
    return f"{LAYERS_METHOD_VERSION}+{inputs}"


def _box(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


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
    png = Image.fromarray(np.round(norm * 65535).astype(np.uint16))
    path = blobs.write_image(f"depth/{version_slug(version)}", ref.poster_id, png, "PNG")
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
    png = Image.fromarray(np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8))
    path = blobs.write_image(f"foreground/{version_slug(version)}", ref.poster_id, png, "PNG")
    mask = prob >= 0.5
    return {
        "foreground_masks": [
            {
                "poster_id": ref.poster_id,
                "model_version": version,
                "mask_path": path,
                "area_fraction": float(mask.mean()),
                "bbox": _box(mask),
                "mean_probability": float(prob.mean()),
            }
        ]
    }


def read_depth(blobs: BlobStore, path: str) -> np.ndarray:
    with Image.open(blobs.abspath(path)) as im:
        return np.asarray(im, dtype=np.float32) / 65535.0


def read_mask(blobs: BlobStore, path: str) -> np.ndarray:
    with Image.open(blobs.abspath(path)) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def compute_layers(
    rgb: np.ndarray,
    depth: np.ndarray,
    foreground: np.ndarray,
    ocr_items: Sequence[tuple[list[int], str, float]],
) -> tuple[list[LayerInfo], TitleChoice | None]:
    split = split_layers(depth, rgb=rgb)
    layers = assign_roles(split, list(ocr_items), foreground, rgb=rgb)
    return layers, title_box(list(ocr_items), rgb.shape)


def layer_rows(
    ref: PosterRef,
    layers: Sequence[LayerInfo],
    title: TitleChoice | None,
    versions: dict[str, str],
    blobs: BlobStore,
) -> Rows:
    buf = io.BytesIO()
    Image.fromarray(labels_from_layers(layers).astype(np.uint8)).save(buf, format="PNG")
    path = blobs.write_bytes(
        f"layers/{version_slug(versions['layers'])}", ref.poster_id, ".png", buf.getvalue()
    )
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
                "method_version": LAYERS_METHOD_VERSION,
                "depth_version": versions["depth"],
                "foreground_version": versions["foreground"],
                "ocr_version": versions["ocr"],
            }
            for layer in layers
        ]
    }
