"""Synthetic posters shared by the vision tests: known depth planes, a printed title."""

import cv2
import numpy as np

H, W = 360, 240
TITLE = [30, 20, 210, 70]


def three_planes(noise: float = 0.02, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Far backdrop 0.15, a subject ellipse 0.55, a title plane 0.95; plus the subject mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    subject = ((yy - 230) / 100) ** 2 + ((xx - 120) / 70) ** 2 < 1
    depth = np.full((H, W), 0.15, np.float32)
    depth[subject] = 0.55
    depth[TITLE[1] : TITLE[3], TITLE[0] : TITLE[2]] = 0.95
    depth += rng.normal(0, noise, depth.shape).astype(np.float32)
    return np.clip(depth, 0, 1), subject


def text_poster(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A photo-like poster with a title printed on it; returns rgb, glyph mask, title box."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([60 + 80 * yy / H, 40 + 30 * xx / W, 90 + 0 * yy], -1).astype(np.float32)
    rgb += rng.normal(0, 6, rgb.shape)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    glyphs = np.zeros((H, W), np.uint8)
    cv2.putText(glyphs, "DUNE", (40, 62), cv2.FONT_HERSHEY_DUPLEX, 1.8, 255, 4, cv2.LINE_AA)
    alpha = glyphs[..., None] / 255.0
    rgb = (rgb * (1 - alpha) + np.array([250, 230, 120]) * alpha).astype(np.uint8)
    ys, xs = np.nonzero(glyphs > 127)
    box = [int(xs.min()) - 3, int(ys.min()) - 3, int(xs.max()) + 4, int(ys.max()) + 4]
    return rgb, glyphs > 127, box
