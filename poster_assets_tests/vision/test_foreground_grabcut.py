import cv2
import numpy as np
import pytest

from poster_assets.vision.foreground_grabcut import (
    FOREGROUND_GRABCUT_VERSION,
    foreground_probability,
    spectral_residual_saliency,
)
from poster_assets.vision.metrics import mask_iou

H, W = 600, 400


def _blob_poster(background: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    if background == "plain":
        bg = np.broadcast_to(np.array([35, 40, 70], np.float32), (H, W, 3)).copy()
    else:  # a vertical gradient with film grain
        t = (yy / H)[..., None]
        bg = (1 - t) * np.array([20, 30, 90], np.float32) + t * np.array([200, 120, 60], np.float32)
    bg += rng.normal(0, 4, bg.shape).astype(np.float32)
    # An irregular blob: an ellipse with a wobbly outline, filled with a coarse texture.
    angle = np.arctan2(yy - 330, xx - 200)
    radius = 1 + 0.12 * np.sin(3 * angle + seed) + 0.06 * np.cos(5 * angle)
    blob = ((yy - 330) / 160) ** 2 + ((xx - 200) / 105) ** 2 < radius**2
    texture = rng.integers(0, 255, (H // 10, W // 10, 3)).astype(np.uint8)
    texture = cv2.resize(texture, (W, H), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    texture = 0.5 * texture + np.array([120, 110, 20], np.float32)
    return np.clip(np.where(blob[..., None], texture, bg), 0, 255).astype(np.uint8), blob


@pytest.mark.parametrize("background", ["plain", "gradient"])
def test_textured_blob_is_found(background):
    rgb, blob = _blob_poster(background)
    prob = foreground_probability(rgb)
    assert FOREGROUND_GRABCUT_VERSION == "fg:grabcut-saliency-v1"
    assert prob.shape == (H, W) and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    assert mask_iou(prob > 0.5, blob) >= 0.8


def test_probability_is_soft_at_the_edge_only():
    rgb, blob = _blob_poster("gradient", seed=2)
    prob = foreground_probability(rgb)
    inner = cv2.erode(blob.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    outer = ~cv2.dilate(blob.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert prob[inner].mean() > 0.95 and prob[outer].mean() < 0.05
    assert np.count_nonzero((prob > 0.05) & (prob < 0.95)) > 0  # not a hard 0/1 mask


def test_title_text_is_not_foreground():
    rgb, blob = _blob_poster("plain")
    cv2.putText(rgb, "ECHO", (70, 110), cv2.FONT_HERSHEY_DUPLEX, 3.0, (250, 240, 220), 8, cv2.LINE_AA)
    box = [60, 30, 345, 125]
    with_text = foreground_probability(rgb, [box])
    assert with_text[box[1] : box[3], box[0] : box[2]].max() < 0.5
    assert mask_iou(with_text > 0.5, blob) >= 0.8


def test_spectral_residual_highlights_the_odd_patch():
    gray = np.full((128, 96), 0.5, np.float32)
    gray[50:70, 40:60] = 1.0
    sal = spectral_residual_saliency(gray)
    assert sal.shape == gray.shape
    assert sal[55:65, 45:55].mean() > 3 * sal[:20, :20].mean()
