import numpy as np
import pytest

from poster_assets.vision.layers import (
    choose_k,
    depth_bands,
    depth_modes,
    kmeans_1d,
    prominent_peaks,
    split_layers,
)
from poster_assets.vision.metrics import mask_iou
from poster_assets_tests.vision._posters import TITLE, H, W, three_planes


def test_depth_modes_and_k_fromthree_planes():
    depth, _ = three_planes()
    modes = depth_modes(depth)
    assert len(modes) == 3
    assert modes == pytest.approx([0.15, 0.55, 0.95], abs=0.03)
    assert choose_k(depth) == 3


def test_choose_k_defaults_for_unimodal_and_clips_many_modes():
    rng = np.random.default_rng(1)
    unimodal = np.clip(rng.normal(0.5, 0.1, (100, 100)), 0, 1).astype(np.float32)
    assert choose_k(unimodal) == 3
    assert choose_k(unimodal, default=4) == 4
    stripes = np.repeat(np.linspace(0.05, 0.95, 9, dtype=np.float32), 20)[None].repeat(50, axis=0)
    assert len(depth_modes(stripes)) == 9
    assert choose_k(stripes) == 6


def test_prominent_peaks_are_scipys_find_peaks_with_a_prominence():
    from scipy.signal import find_peaks

    rng = np.random.default_rng(7)
    signals = [rng.integers(0, 4, n).astype(np.float64) for n in (3, 5, 12, 66) for _ in range(200)]
    signals += [np.convolve(rng.poisson(3, 66), np.ones(3), "same").astype(np.float64) for _ in range(200)]
    signals += [np.array([0.0, 2, 2, 2, 0, 1, 1, 3, 3, 0]), np.zeros(8), np.ones(8), np.array([0.0, 1])]
    found = 0
    for x in signals:
        for share in (0.0, 0.08, 0.5):
            floor = share * x.max()
            expected = find_peaks(x, prominence=floor)[0].tolist()
            assert prominent_peaks(x, floor) == expected, (x.tolist(), floor)
            found += len(expected)
    assert found > 1000  # the comparison saw peaks, plateaus among them


def test_split_layers_recovers_planes_ordered_far_to_near():
    depth, subject = three_planes()
    split = split_layers(depth, superpixels=False)
    assert split.k == 3
    assert split.mean_depths == sorted(split.mean_depths)
    assert mask_iou(split.labels == 1, subject & (depth < 0.8)) > 0.95
    assert np.all(split.labels[TITLE[1] + 2 : TITLE[3] - 2, TITLE[0] + 2 : TITLE[2] - 2] == 2)


def test_split_layers_superpixels_snap_to_image_edges():
    # The depth edge is 6 px off the true object edge; SLIC on the image pulls it back.
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, :] = (30, 60, 150)
    rgb[:, 120:] = (220, 180, 40)
    depth = np.full((H, W), 0.2, np.float32)
    depth[:, 126:] = 0.8
    truth = np.zeros((H, W), bool)
    truth[:, 120:] = True
    plain = split_layers(depth, k=2, superpixels=False)
    snapped = split_layers(depth, rgb, k=2, superpixels=True)
    assert mask_iou(snapped.labels == 1, truth) > mask_iou(plain.labels == 1, truth)


def test_depth_bands_split_the_masked_depth_at_its_modes_and_label_every_pixel():
    depth, subject = three_planes()
    bands, n = depth_bands(depth, np.ones(depth.shape, bool))
    assert n == 3 and bands.dtype == np.uint8  # a label map; fusion composes its layers on it
    assert mask_iou(bands == 1, subject) > 0.95
    assert np.all(bands[TITLE[1] + 2 : TITLE[3] - 2, TITLE[0] + 2 : TITLE[2] - 2] == 2)
    # Bands of the rest only: the subject's plane is no band, its pixels take the nearest one.
    bands, n = depth_bands(depth, ~subject)
    assert n == 2
    assert bands.shape == depth.shape and set(np.unique(bands)) == {0, 1}


def test_depth_bands_of_a_unimodal_or_empty_selection():
    rng = np.random.default_rng(2)
    unimodal = np.clip(rng.normal(0.5, 0.1, (120, 80)), 0, 1).astype(np.float32)
    bands, n = depth_bands(unimodal, np.ones(unimodal.shape, bool))
    assert n == 1 and not bands.any()
    bands, n = depth_bands(unimodal, np.zeros(unimodal.shape, bool))
    assert n == 0 and bands.shape == unimodal.shape


def test_kmeans_1d_finds_weighted_centres_from_either_start():
    values = np.array([0.1, 0.12, 0.5, 0.52, 0.9])
    weights = np.array([1.0, 1.0, 2.0, 2.0, 1.0])
    expected = [0.11, 0.51, 0.9]
    assert kmeans_1d(values, weights, 3, init=[0.0, 0.4, 1.0]) == pytest.approx(expected)
    assert kmeans_1d(values, weights, 3) == pytest.approx(expected)
    # A centre that ends up with no value is dropped rather than left empty.
    assert len(kmeans_1d(values, weights, 3, init=[0.1, 0.11, 0.5])) <= 3
