import time

import cv2
import numpy as np

from poster_assets.vision.depth_heuristic import DEPTH_HEURISTIC_VERSION, estimate_depth, guided_filter

H, W = 600, 400


def _subject_on_blurred_backdrop(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A sharp, saturated, centred subject in front of a defocused, desaturated backdrop."""
    rng = np.random.default_rng(seed)
    backdrop = rng.integers(60, 200, (H // 10, W // 10, 3)).astype(np.uint8)
    backdrop = cv2.resize(backdrop, (W, H), interpolation=cv2.INTER_CUBIC)
    backdrop = cv2.GaussianBlur(backdrop, (0, 0), 12)
    grey = backdrop.mean(axis=2, keepdims=True)
    backdrop = (0.3 * backdrop + 0.7 * grey).astype(np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    subject = ((yy - 310) / 170) ** 2 + ((xx - 200) / 110) ** 2 < 1
    texture = rng.integers(0, 255, (H // 6, W // 6, 3)).astype(np.uint8)
    texture = cv2.resize(texture, (W, H), interpolation=cv2.INTER_NEAREST)
    texture[..., 0] = 150 + texture[..., 0] // 3  # saturated warm colours
    texture[..., 2] = texture[..., 2] // 4
    return np.where(subject[..., None], texture, backdrop), subject


def test_contract_shape_dtype_range():
    rgb, _ = _subject_on_blurred_backdrop()
    depth = estimate_depth(rgb)
    assert DEPTH_HEURISTIC_VERSION == "depth:heuristic-v1"
    assert depth.shape == (H, W) and depth.dtype == np.float32
    assert depth.min() >= 0.0 and depth.max() <= 1.0
    assert depth.max() - depth.min() > 0.5


def test_sharp_saturated_centred_subject_is_nearer_than_blurred_backdrop():
    rgb, subject = _subject_on_blurred_backdrop()
    depth = estimate_depth(rgb)
    assert depth[subject].mean() > depth[~subject].mean() + 0.3
    # Ranking, not only means: most subject pixels are nearer than the backdrop's median.
    assert np.mean(depth[subject] > np.median(depth[~subject])) > 0.9


def test_same_subject_off_centre_still_nearer():
    rgb, subject = _subject_on_blurred_backdrop(seed=3)
    shifted, mask = np.roll(rgb, 90, axis=1), np.roll(subject, 90, axis=1)
    depth = estimate_depth(shifted)
    assert depth[mask].mean() > depth[~mask].mean() + 0.2


def test_text_glyphs_are_the_nearest_plane_and_alone_there():
    rgb, subject = _subject_on_blurred_backdrop()
    cv2.putText(rgb, "NOIR", (60, 90), cv2.FONT_HERSHEY_DUPLEX, 3.0, (255, 255, 255), 8, cv2.LINE_AA)
    glyphs = np.zeros((H, W), np.uint8)
    cv2.putText(glyphs, "NOIR", (60, 90), cv2.FONT_HERSHEY_DUPLEX, 3.0, 255, 8, cv2.LINE_AA)
    depth = estimate_depth(rgb, [[50, 20, 350, 105]])
    core = cv2.erode(glyphs, np.ones((3, 3), np.uint8)) > 200
    assert np.all(depth[core] == 1.0)
    outside = np.ones((H, W), bool)
    outside[10:115, 40:360] = False
    assert depth[outside].max() <= 0.86  # scene kept below the text plane
    assert depth[subject].mean() > depth[~subject & outside].mean() + 0.3


def test_guided_filter_keeps_edges_that_a_box_blur_smears():
    guide = np.zeros((64, 64), np.float32)
    guide[:, 32:] = 1.0
    noisy = guide + np.random.default_rng(0).normal(0, 0.1, guide.shape).astype(np.float32)
    out = guided_filter(guide, noisy, radius=4, eps=1e-3)
    assert abs(out[:, 30].mean() - 0.0) < 0.1 and abs(out[:, 33].mean() - 1.0) < 0.1
    assert out[:, :28].std() < noisy[:, :28].std() / 2


def test_fast_enough_per_poster():
    rgb, _ = _subject_on_blurred_backdrop()
    estimate_depth(rgb)
    start = time.perf_counter()
    for _ in range(5):
        estimate_depth(rgb, [[50, 20, 350, 105]])
    # Target is < 50 ms on one core; the bound leaves room for a loaded CI machine.
    assert (time.perf_counter() - start) / 5 < 0.25
