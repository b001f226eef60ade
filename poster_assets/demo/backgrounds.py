"""Procedural and photographic poster backgrounds: float32 HxWx3 arrays in [0, 1]."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from poster_assets.demo.sources import sample_image
from poster_assets.demo.styles import RGB

Background = Callable[[np.random.Generator, int, int, tuple[np.ndarray, ...]], np.ndarray]


def _rgb(c: RGB) -> np.ndarray:
    return np.asarray(c, dtype=np.float32) / 255.0


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Blend colours a -> b by the HxW weight t."""
    return a + (b - a) * t[..., None]


def value_noise(rng: np.random.Generator, h: int, w: int, base: int = 3, octaves: int = 5) -> np.ndarray:
    """Fractal value noise in [0, 1]: random grids upscaled bicubically (cheap clouds).

    Octaves are summed at half resolution and upscaled once: the result is smooth anyway.
    """
    sh, sw = max(1, h // 2), max(1, w // 2)
    out = np.zeros((sh, sw), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        gh, gw = base * 2**o + 1, max(2, round(base * 2**o * w / h)) + 1
        grid = Image.fromarray(rng.random((gh, gw), dtype=np.float32), mode="F")
        out += amp * np.asarray(grid.resize((sw, sh), Image.Resampling.BICUBIC))
        total += amp
        amp *= 0.5
    lo, hi = float(out.min()), float(out.max())
    out = (out - lo) / max(hi - lo, 1e-6)
    if (sh, sw) != (h, w):
        out = np.asarray(Image.fromarray(out, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    return np.clip(out, 0.0, 1.0)


def _ramp(h: int, w: int, angle: float) -> np.ndarray:
    """0 -> 1 along a direction (radians, 0 = top to bottom)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (yy / h - 0.5) * np.cos(angle) + (xx / w - 0.5) * np.sin(angle) * (w / h)
    return np.clip(t + 0.5, 0.0, 1.0).astype(np.float32)


def _radius(h: int, w: int, cy: float = 0.45, cx: float = 0.5) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (np.hypot((yy / h - cy) * (h / w), xx / w - cx) / 0.9).astype(np.float32)


def _flat(rng, h, w, pal):
    grain = value_noise(rng, h, w, base=24, octaves=2) - 0.5
    return np.broadcast_to(pal[int(rng.integers(len(pal)))], (h, w, 3)) + 0.03 * grain[..., None]


def _gradient(rng, h, w, pal):
    i, j = rng.choice(len(pal), 2, replace=False)
    return _mix(pal[i], pal[j], _ramp(h, w, float(rng.uniform(-0.4, 0.4))))


def _radial(rng, h, w, pal):
    r = np.clip(_radius(h, w, float(rng.uniform(0.3, 0.6))), 0, 1)
    return _mix(pal[-1] * 0.9 + pal[1] * 0.1, pal[0], r**1.3)


def _fog(rng, h, w, pal):
    n = value_noise(rng, h, w, base=2, octaves=6)
    base = _mix(pal[0], pal[1], _ramp(h, w, 0.0))
    return _mix(base, pal[2], np.clip(n * 1.4 - 0.45, 0, 1) ** 1.5)


def _stars(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    count = h * w // 900
    ys, xs = rng.integers(0, h, count), rng.integers(0, w, count)
    layer[ys, xs] = rng.pareto(2.5, count).astype(np.float32) * 0.35 + 0.25
    soft = np.asarray(
        Image.fromarray(np.clip(layer * 255, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    ).astype(np.float32)
    return np.clip(layer + soft / 255.0 * 2.5, 0, 1)


def _starfield(rng, h, w, pal):
    base = _mix(pal[0], pal[1], _ramp(h, w, float(rng.uniform(-0.3, 0.3))) ** 2)
    nebula = np.clip(value_noise(rng, h, w, base=2, octaves=6) * 1.6 - 0.7, 0, 1) ** 1.6
    img = base + pal[2][None, None] * nebula[..., None] * 0.8
    return img + _stars(rng, h, w)[..., None]


def _cover(img: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Resize and crop a photo so it covers h x w, at a random crop offset."""
    ih, iw = img.shape[:2]
    s = max(h / ih, w / iw) * float(rng.uniform(1.0, 1.3))
    nh, nw = max(h, round(ih * s)), max(w, round(iw * s))
    big = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BICUBIC))
    y0, x0 = int(rng.integers(nh - h + 1)), int(rng.integers(nw - w + 1))
    return big[y0 : y0 + h, x0 : x0 + w]


def _hubble(rng, h, w, pal):
    photo = _cover(sample_image("hubble_deep_field"), h, w, rng).astype(np.float32) / 255.0
    return photo * 0.8 + _stars(rng, h, w)[..., None] * 0.5


def _bokeh(rng, h, w, pal):
    img = _gradient(rng, h, w, pal)
    spots = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(spots)
    for _ in range(int(rng.integers(25, 45))):
        r = float(rng.uniform(0.02, 0.08)) * w
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.integers(40, 110)))
    soft = np.asarray(spots.filter(ImageFilter.GaussianBlur(w * 0.006)), np.float32) / 255.0
    return _mix(img, np.ones(3, np.float32), soft)


def _sunburst(rng, h, w, pal):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h * float(rng.uniform(0.3, 0.6)), w * 0.5
    rays = int(rng.integers(14, 26))
    ang = np.arctan2(yy - cy, xx - cx) / (2 * np.pi) * rays
    stripe = (np.floor(ang) % 2).astype(np.float32)
    i = int(rng.integers(len(pal)))
    return _mix(pal[i], pal[i] * 0.82 + 0.18, stripe)


def _halftone(rng, h, w, pal):
    i, j = rng.choice(len(pal), 2, replace=False)
    step = float(rng.uniform(0.025, 0.04)) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.hypot((yy % step) - step / 2, (xx % step) - step / 2) / step
    radius = 0.12 + 0.3 * _ramp(h, w, float(rng.uniform(-1, 1)))
    dots = np.clip((radius - dist) * step, 0, 1)  # about one pixel of anti-aliasing
    return _mix(pal[i], pal[j], dots)


def _sunset(rng, h, w, pal):
    sky = _mix(pal[1], pal[2], _ramp(h, w, 0.0) ** 0.8)
    sky = _mix(sky, pal[1] * 0.6, 1 - _ramp(h, w, 0.0) ** 0.35)
    horizon = float(rng.uniform(0.68, 0.8)) * h
    ridge = value_noise(rng, 1, w, base=1, octaves=4)[0] if w > 1 else np.zeros(w, np.float32)
    ground_top = horizon - ridge * h * float(rng.uniform(0.04, 0.12))
    yy = np.arange(h, dtype=np.float32)[:, None]
    ground = np.clip(yy - ground_top[None, :] + 0.5, 0, 1)
    return _mix(sky, pal[0], ground)


def _texture(rng, h, w, pal):
    name = ("grass", "gravel", "brick")[int(rng.integers(3))]
    tex = _cover(sample_image(name), h, w, rng).astype(np.float32) / 255.0
    tex = (tex - tex.mean()) / (tex.std() + 1e-6) * 0.18 + 0.5
    return _mix(pal[0], pal[-1], np.clip(tex, 0, 1))


def _streaks(rng, h, w, pal):
    base = _mix(pal[0], pal[1], _ramp(h, w, float(rng.uniform(0.5, 1.1))))
    lines = Image.fromarray(rng.random((h // 40 + 2, 6), dtype=np.float32), mode="F")
    streak = np.asarray(lines.resize((w, h), Image.Resampling.BICUBIC))
    streak = np.clip(streak * 2.2 - 1.3, 0, 1)
    return _mix(base, pal[1] * 0.5 + 0.5, streak * 0.6)


BACKGROUNDS: dict[str, Background] = {
    "flat": _flat,
    "gradient": _gradient,
    "radial": _radial,
    "fog": _fog,
    "starfield": _starfield,
    "hubble": _hubble,
    "bokeh": _bokeh,
    "sunburst": _sunburst,
    "halftone": _halftone,
    "sunset": _sunset,
    "texture": _texture,
    "streaks": _streaks,
}


def make_background(
    kind: str, rng: np.random.Generator, h: int, w: int, palette: tuple[RGB, ...]
) -> np.ndarray:
    """Render background ``kind`` with a palette jittered per poster (so no two look alike)."""
    # Multiplicative jitter keeps dark palettes dark and their hue recognisable.
    gain = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    pal = tuple(np.clip(_rgb(c) * gain, 0, 1) for c in palette)
    img = BACKGROUNDS[kind](rng, h, w, pal)
    return np.clip(np.asarray(img, np.float32), 0, 1)


def vignette(img: np.ndarray, strength: float) -> np.ndarray:
    """Darken the corners; strength 0 leaves the image as is."""
    if strength <= 0:
        return img
    h, w = img.shape[:2]
    r = _radius(h, w, 0.5, 0.5) * 1.1
    return img * (1 - strength * np.clip(r, 0, 1) ** 2.2)[..., None]
