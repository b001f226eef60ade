"""Subjects: a sample photo cut out through a known soft shape mask, colour-graded per genre."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from poster_assets.demo.sources import sample_image

# Crop (y0, y1, x0, x1) around the interesting part of each photo.
_CROPS: dict[str, tuple[int, int, int, int]] = {
    "astronaut": (0, 512, 10, 350),
    "chelsea": (0, 300, 80, 400),
    "coffee": (10, 390, 110, 500),
    "rocket": (0, 427, 220, 420),
    "camera": (0, 512, 40, 420),
    "moon": (0, 512, 0, 512),
    "retina": (60, 1350, 60, 1350),
}
# Subjects whose natural outline overrides the style's shape.
_FIXED_SHAPE = {"moon": "circle", "retina": "circle", "horse": "silhouette"}
SHAPES = ("ellipse", "circle", "blob", "arch", "rect", "silhouette")


@dataclass(frozen=True)
class Subject:
    """A cut-out ready to paste: colour and soft alpha of the same size."""

    rgb: np.ndarray  # float32 hxwx3 in [0, 1]
    alpha: np.ndarray  # float32 hxw in [0, 1]; >= 0.5 is the ground-truth foreground
    name: str
    shape: str


def shape_for(name: str, shape: str) -> str:
    return _FIXED_SHAPE.get(name, shape)


def _shape_mask(shape: str, h: int, w: int, inset: float, rng: np.random.Generator) -> np.ndarray:
    """Binary mask (uint8 0/255) of ``shape`` inset by ``inset`` pixels so its blur stays inside."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    cy, cx = h / 2, w / 2
    ry, rx = h / 2 - inset, w / 2 - inset
    if shape in ("ellipse", "circle"):
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    elif shape == "blob":
        theta = np.arctan2((yy - cy) / ry, (xx - cx) / rx)
        rho = np.hypot((yy - cy) / ry, (xx - cx) / rx)
        r = np.ones_like(theta)
        for k in range(2, 6):
            r += rng.uniform(0.0, 0.16) / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        inside = rho <= r / r.max()
    elif shape == "arch":
        top = inset + rx
        inside = ((yy >= top) & (np.abs(xx - cx) <= rx) & (yy <= h - inset)) | (
            (xx - cx) ** 2 + (yy - top) ** 2 <= rx**2
        )
    elif shape == "rect":
        corner = 0.06 * min(h, w)
        dx = np.clip(np.abs(xx - cx) - (rx - corner), 0, None)
        dy = np.clip(np.abs(yy - cy) - (ry - corner), 0, None)
        inside = np.hypot(dx, dy) <= corner
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    return inside.astype(np.uint8) * 255


def grade(rgb: np.ndarray, kind: str) -> np.ndarray:
    """Genre colour grade of a float RGB image."""
    lum = rgb @ np.asarray([0.299, 0.587, 0.114], np.float32)
    gray = np.repeat(lum[..., None], 3, axis=2)
    if kind == "dark":
        out = (gray * 0.7 + rgb * 0.3) ** 1.5 * np.asarray([1.0, 0.82, 0.8], np.float32)
    elif kind == "cool":
        out = rgb * 0.6 + gray * np.asarray([0.3, 0.45, 0.55], np.float32)
    elif kind == "warm":
        out = (rgb * 0.85 + 0.12) * np.asarray([1.05, 0.95, 0.85], np.float32)
    elif kind == "vivid":
        out = gray + (rgb - gray) * 1.35
    elif kind == "sepia":
        out = lum[..., None] * np.asarray([1.07, 0.86, 0.62], np.float32) + 0.03
    elif kind == "teal_orange":
        t = np.clip(lum, 0, 1)[..., None]
        out = (
            rgb * 0.65
            + (1 - t) * np.asarray([0.0, 0.12, 0.16], np.float32)
            + t * np.asarray([0.3, 0.14, 0.0], np.float32)
        )
    elif kind == "muted":
        out = (rgb * 0.55 + gray * 0.45) * 0.9 + 0.06
    else:
        out = rgb
    return np.clip(out, 0, 1).astype(np.float32)


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BICUBIC))


def make_subject(
    name: str, shape: str, rng: np.random.Generator, width: int, max_height: int, grade_kind: str
) -> Subject:
    """Cut ``name`` out through ``shape`` at about ``width`` pixels wide, graded by ``grade_kind``."""
    shape = shape_for(name, shape)
    flip = bool(rng.random() < 0.5)
    if name == "horse":
        sil = sample_image("horse")
        ys, xs = np.nonzero(sil)
        src = sil[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    else:
        y0, y1, x0, x1 = _CROPS[name]
        src = sample_image(name)[y0:y1, x0:x1]
        if shape == "circle":
            side = min(src.shape[:2])
            oy, ox = (src.shape[0] - side) // 2, (src.shape[1] - side) // 2
            src = src[oy : oy + side, ox : ox + side]
    if flip:
        src = src[:, ::-1]
    sh, sw = src.shape[:2]
    scale = min(width / sw, max_height / sh)
    w, h = max(8, round(sw * scale)), max(8, round(sh * scale))
    src = np.ascontiguousarray(src)

    if name == "horse":
        # The silhouette is the shape: a dark figure with a faint top light, as on a sunset poster.
        alpha_img = Image.fromarray(src).resize((w, h), Image.Resampling.BILINEAR)
        alpha_img = alpha_img.filter(ImageFilter.GaussianBlur(max(0.8, w * 0.002)))
        alpha = np.asarray(alpha_img, np.float32) / 255.0
        ramp = np.linspace(0.16, 0.03, h, dtype=np.float32)[:, None, None]
        rgb = np.broadcast_to(ramp * np.asarray([1.0, 0.8, 0.7], np.float32), (h, w, 3)).copy()
        return Subject(rgb=rgb, alpha=alpha, name=name, shape=shape)

    rgb = _resize(src, w, h).astype(np.float32) / 255.0
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if name == "moon":  # limb darkening turns the flat moon surface into a sphere
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        rho2 = ((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2
        rgb = rgb * (np.clip(1 - rho2, 0, 1) ** 0.3)[..., None] * 1.15
    sigma = w * float(rng.uniform(0.004, 0.015))
    mask = _shape_mask(shape, h, w, inset=3 * sigma + 1, rng=rng)
    alpha = np.asarray(Image.fromarray(mask).filter(ImageFilter.GaussianBlur(sigma)), np.float32) / 255.0
    return Subject(rgb=grade(rgb, grade_kind), alpha=alpha, name=name, shape=shape)
