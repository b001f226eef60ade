"""Typography with matplotlib's bundled DejaVu TrueType faces: glyph masks and compositing."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FACES = (
    "DejaVuSans-Bold",
    "DejaVuSans-BoldOblique",
    "DejaVuSerif-Bold",
    "DejaVuSerif-BoldItalic",
    "DejaVuSansMono-Bold",
    "DejaVuSans",
    "DejaVuSerif-Italic",
)


def font_path(face: str) -> Path:
    # Imported here: matplotlib adds a third of a second to every process that loads the Dagster
    # definitions (they reach the demo's ground truth through the layer evaluation).
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{face}.ttf"
    if not path.is_file():
        raise FileNotFoundError(f"font face {face!r} is not bundled with matplotlib ({path})")
    return path


@lru_cache(maxsize=256)
def load_font(face: str, size: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: identical glyph placement whether or not libraqm is installed (byte-stable output).
    return ImageFont.truetype(str(font_path(face)), size, layout_engine=ImageFont.Layout.BASIC)


@dataclass(frozen=True)
class Glyphs:
    """One rendered line: fill and fill+outline coverage (float32 [0, 1]) cropped to the ink."""

    text: str
    fill: np.ndarray
    ink: np.ndarray  # fill plus outline stroke; equals fill when there is no stroke
    origin: tuple[int, int]  # top-left of the crop relative to the start of the baseline

    @property
    def width(self) -> int:
        return self.ink.shape[1]

    @property
    def height(self) -> int:
        return self.ink.shape[0]


def line_width(text: str, face: str, size: int, tracking: float = 0.0) -> float:
    """Advance width of ``text``; tracking adds that fraction of the size between letters."""
    font = load_font(face, size)
    if not tracking:
        return font.getlength(text)
    return sum(font.getlength(c) for c in text) + tracking * size * (len(text) - 1)


def render_line(text: str, face: str, size: int, tracking: float = 0.0, stroke: int = 0) -> Glyphs:
    """Rasterise one line. Letter-spaced text is set glyph by glyph at its advances."""
    font = load_font(face, size)
    pad = stroke + size // 4 + 2
    w = int(line_width(text, face, size, tracking)) + 2 * pad + size // 2
    h = int(size * 1.5) + 2 * pad
    base = (pad, pad + size)
    layers = []
    for width in (0, stroke) if stroke else (0,):
        im = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(im)
        if tracking:
            x = float(base[0])
            for c in text:
                draw.text(
                    (x, base[1]), c, fill=255, font=font, anchor="ls", stroke_width=width, stroke_fill=255
                )
                x += font.getlength(c) + tracking * size
        else:
            draw.text(base, text, fill=255, font=font, anchor="ls", stroke_width=width, stroke_fill=255)
        layers.append(np.asarray(im, np.float32) / 255.0)
    ink = layers[-1]
    ys, xs = np.nonzero(ink)
    if not len(ys):
        raise ValueError(f"{face} drew no ink for {text!r}")
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    origin = (int(xs.min()) - base[0], int(ys.min()) - base[1])
    return Glyphs(text=text, fill=layers[0][box].copy(), ink=ink[box].copy(), origin=origin)


def condensed_line(text: str, face: str, size: int, squeeze: float) -> np.ndarray:
    """Small text squeezed horizontally, the look of a billing block (coverage in [0, 1])."""
    g = render_line(text, face, size)
    w = max(1, round(g.width * squeeze))
    im = Image.fromarray((g.ink * 255).astype(np.uint8)).resize((w, g.height), Image.Resampling.LANCZOS)
    return np.asarray(im, np.float32) / 255.0


def paste_mask(canvas_shape: tuple[int, int], patch: np.ndarray, x: int, y: int) -> np.ndarray:
    """Place a coverage patch on an empty HxW canvas, clipping at the edges."""
    out = np.zeros(canvas_shape, np.float32)
    h, w = patch.shape
    y0, x0 = max(0, y), max(0, x)
    y1, x1 = min(canvas_shape[0], y + h), min(canvas_shape[1], x + w)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x]
    return out


def blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a coverage map, computed only around its ink (3 sigma of padding)."""
    out = np.zeros_like(mask)
    region = ink_slices(mask)
    if region is None:
        return out
    pad = int(3 * sigma) + 2
    ys = slice(max(0, region[0].start - pad), min(mask.shape[0], region[0].stop + pad))
    xs = slice(max(0, region[1].start - pad), min(mask.shape[1], region[1].stop + pad))
    im = Image.fromarray(np.clip(mask[ys, xs] * 255, 0, 255).astype(np.uint8))
    out[ys, xs] = np.asarray(im.filter(ImageFilter.GaussianBlur(sigma)), np.float32) / 255.0
    return out


def ink_slices(alpha: np.ndarray, threshold: float = 0.0) -> tuple[slice, slice] | None:
    """Row and column slices bounding ``alpha > threshold``; None when nothing is there."""
    rows = np.flatnonzero((alpha > threshold).any(axis=1))
    if not rows.size:
        return None
    cols = np.flatnonzero((alpha[rows[0] : rows[-1] + 1] > threshold).any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def over(img: np.ndarray, color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite a colour (RGB, or an array broadcastable to HxWx3) over ``img`` in place.

    Only the bounding box of the coverage is touched: text covers a small part of a poster.
    """
    region = ink_slices(alpha)
    if region is None:
        return img
    color = np.asarray(color, np.float32)
    if color.ndim == 3:
        color = np.broadcast_to(color, img.shape)[region]
    patch = img[region]
    patch += (color - patch) * alpha[region][..., None]
    return img


def luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of sRGB values in [0, 1]."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return lin @ np.asarray([0.2126, 0.7152, 0.0722], np.float32)


def contrast_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    la, lb = luminance(a), luminance(b)
    return (np.maximum(la, lb) + 0.05) / (np.minimum(la, lb) + 0.05)
