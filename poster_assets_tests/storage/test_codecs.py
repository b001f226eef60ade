"""The PNG codecs give back exactly what was stored (the fast zlib level loses nothing)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from poster_assets.demo import plan_poster, render_poster
from poster_assets.storage.codecs import (
    decode_depth,
    decode_labels,
    decode_mask,
    encode_depth,
    encode_labels,
    encode_mask,
    quantize_mask,
)
from poster_assets.vision.depth_heuristic import estimate_depth


def test_maps_round_trip_through_their_pngs(tmp_path) -> None:
    rgb = render_poster(plan_poster(0, 1)).image
    depth = estimate_depth(rgb)
    rng = np.random.default_rng(0)
    prob = rng.random(depth.shape, dtype=np.float32)
    labels = rng.integers(0, 7, depth.shape).astype(np.uint8)
    for name, data in {
        "depth.png": encode_depth(depth),
        "mask.png": encode_mask(prob),
        "labels.png": encode_labels(labels),
    }.items():
        (tmp_path / name).write_bytes(data)
    back = decode_depth(tmp_path / "depth.png")
    np.testing.assert_array_equal(back, np.round(np.clip(depth, 0, 1) * 65535).astype(np.float32) / 65535)
    assert back.shape == depth.shape and np.abs(back - depth).max() <= 0.5 / 65535 + 1e-7
    np.testing.assert_array_equal(decode_mask(tmp_path / "mask.png"), quantize_mask(prob))
    np.testing.assert_array_equal(decode_labels(tmp_path / "labels.png"), labels)
    with Image.open(tmp_path / "depth.png") as im:  # 16-bit grey, readable by any PNG reader
        assert im.mode.startswith("I") and im.size == (depth.shape[1], depth.shape[0])
