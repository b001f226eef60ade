"""Crops and the raw-pixel baseline (pure array code, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from poster_assets.demo import plan_poster, render_poster
from poster_assets.embed.kinds import (
    CROP_MAX_SIDE,
    embed_kind,
    foreground_crop,
    kind_inputs,
    raw_pixel_embedding,
    whole_poster,
)
from poster_assets.extract.versions import EMBEDDING_KINDS, PIXELS_VERSION, kind_versions
from poster_assets.models.efficientnet_lite import letterbox
from poster_assets.search.quality import jpeg_variant, resized_variant
from poster_assets.storage.codecs import mask_bbox
from poster_assets_tests.images import sample_images


def _poster_with_subject() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)  # noisy background
    rgb[100:200, 50:150] = (200, 30, 30)  # red subject
    mask = np.zeros((300, 200), np.float32)
    mask[100:200, 50:150] = 1.0
    return rgb, mask


def test_foreground_crop_pads_the_box_and_suppresses_the_background():
    rgb, mask = _poster_with_subject()
    for suppress in ("gray", "blur"):
        crop = foreground_crop(rgb, mask, [50, 100, 150, 200], pad=0.1, suppress=suppress)
        assert crop.shape == (120, 120, 3) and crop.dtype == np.uint8
        np.testing.assert_array_equal(crop[10:110, 10:110], rgb[100:200, 50:150])
        border = crop[:10].astype(np.float32)
        assert border.std() < rgb[:10].astype(np.float32).std() / 3  # background texture is gone
    grey = foreground_crop(rgb, mask, [50, 100, 150, 200], suppress="gray")
    assert (grey[:10] == 127).all()


def test_foreground_crop_defaults_to_the_mask_box_and_resizes_masks():
    rgb, mask = _poster_with_subject()
    assert mask_bbox(mask) == [50, 100, 150, 200]
    small_mask = mask[::2, ::2]  # segmenter output at half resolution
    crop = foreground_crop(rgb, small_mask, pad=0.0)
    assert crop.shape[:2] == (100, 100)
    empty = foreground_crop(rgb, np.zeros_like(mask))
    np.testing.assert_array_equal(empty, rgb)
    with pytest.raises(ValueError):
        foreground_crop(rgb, mask, [10, 10, 10, 50])


def test_whole_poster_checks_the_image_convention():
    rgb, _ = _poster_with_subject()
    np.testing.assert_array_equal(whole_poster(rgb), rgb)
    with pytest.raises(ValueError):
        whole_poster(rgb.astype(np.float32))


def test_raw_pixel_embedding_is_a_unit_vector_robust_to_recompression():
    images = sample_images()
    vecs = np.stack([raw_pixel_embedding(im) for im in images])
    assert vecs.shape == (len(images), 16 * 16 * 3)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    for i in (0, 2, 3):
        for variant in (jpeg_variant(images[i]), resized_variant(images[i])):
            sims = vecs @ raw_pixel_embedding(variant)
            assert int(np.argmax(sims)) == i and sims[i] > 0.97
    flat = raw_pixel_embedding(np.full((20, 20, 3), 80, np.uint8))
    assert np.isclose(np.linalg.norm(flat), 1.0)


def test_kinds_dispatch_and_version():
    rgb, mask = _poster_with_subject()
    assert set(EMBEDDING_KINDS) == {"foreground", "poster", "pixels"}
    assert kind_inputs("foreground", rgb, mask).shape[:2] == (120, 120)
    assert kind_inputs("poster", rgb).shape == rgb.shape
    assert embed_kind("pixels", [rgb, rgb]).shape == (2, 768)
    assert kind_versions("net@v1", "fg@v1")["pixels"] == PIXELS_VERSION
    with pytest.raises(ValueError):
        kind_inputs("foreground", rgb)
    with pytest.raises(ValueError):
        kind_inputs("colour", rgb)


def test_a_large_foreground_crop_is_made_small_and_looks_the_same_to_the_embedder():
    """A demo poster's subject crop is made at most CROP_MAX_SIDE long; letterboxed to the
    embedder's 224 px it matches the crop made at full resolution within a few grey levels."""
    rendered = render_poster(plan_poster(0, 3))
    rgb, mask = rendered.image, rendered.foreground_mask.astype(np.float32)
    full = foreground_crop(rgb, mask, max_side=None)
    small = foreground_crop(rgb, mask)
    assert max(full.shape[:2]) > CROP_MAX_SIDE >= max(small.shape[:2]) > CROP_MAX_SIDE - 2
    seen_full, seen_small = letterbox(full).astype(np.float32), letterbox(small).astype(np.float32)
    assert np.abs(seen_full - seen_small).mean() < 3.0
