"""One synthetic poster: plan the random choices, then draw background, subject, title, credits.

Every random stream is seeded from (corpus seed, poster index, layer), so a poster is the same
whichever process draws it and whether or not a layer is left out (tests render it without the
subject to check the foreground mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poster_assets.demo import words
from poster_assets.demo.backgrounds import make_background, vignette
from poster_assets.demo.styles import GENRES, PLACEMENTS, STYLES
from poster_assets.demo.subjects import make_subject, shape_for
from poster_assets.demo.text import (
    Glyphs,
    blur,
    condensed_line,
    contrast_ratio,
    ink_slices,
    line_width,
    over,
    paste_mask,
    render_line,
)

WIDTHS = (600, 640, 680, 720, 760, 800, 900, 1000)  # all even: height = 1.5 * width exactly
_JPEG_SHARE = 0.6
_PLAN, _BACKGROUND, _SUBJECT, _EFFECTS, _TEXT, _TITLE_FX = range(6)


@dataclass(frozen=True)
class PosterPlan:
    """The discrete choices for one poster (cheap to make; the drawing follows from it)."""

    seed: int
    index: int  # 1-based, as in the file name
    title: str  # canonical title case, as a catalogue would list it
    genres: tuple[str, ...]
    year: int
    width: int
    height: int
    format: str  # PIL format name: "JPEG" or "PNG"
    background: str
    subject: str
    shape: str
    placement: str
    face: str
    upper: bool
    two_lines: bool
    align_left: bool
    title_color: tuple[int, int, int]
    credits: bool
    tagline: str | None

    @property
    def genre(self) -> str:
        return self.genres[0]

    @property
    def file(self) -> str:
        ext = "jpg" if self.format == "JPEG" else "png"
        return f"{self.index:04d}_{words.slugify(self.title)}.{ext}"


@dataclass
class RenderedPoster:
    """Pixels plus the ground truth of what was drawn where."""

    plan: PosterPlan
    image: np.ndarray  # uint8 HxWx3
    title_mask: np.ndarray  # bool HxW: title glyph ink (fill and outline, not the shadow)
    foreground_mask: np.ndarray  # bool HxW: subject alpha >= 0.5
    title_lines: list[str]
    title_line_boxes: list[list[int]]
    font_size: int
    outline: bool
    credits_text: list[str] = field(default_factory=list)
    credits_box: list[int] | None = None
    tagline_box: list[int] | None = None
    layers: list[str] = field(default_factory=list)

    @property
    def title_box(self) -> list[int]:
        return mask_box(self.title_mask)


def mask_box(mask: np.ndarray) -> list[int] | None:
    """[x0, y0, x1, y1] (exclusive) of the True pixels, or None when there are none."""
    region = ink_slices(mask)
    if region is None:
        return None
    return [region[1].start, region[0].start, region[1].stop, region[0].stop]


def _rng(plan: PosterPlan | tuple[int, int], stream: int) -> np.random.Generator:
    seed, index = (plan.seed, plan.index) if isinstance(plan, PosterPlan) else plan
    return np.random.default_rng([seed, index, stream])


def _choice(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def plan_poster(seed: int, index: int) -> PosterPlan:
    """Draw the choices for poster ``index`` of the corpus with ``seed``."""
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    rng = _rng((seed, index), _PLAN)
    genre = _choice(rng, GENRES)
    genres = (genre,)
    if rng.random() < 0.35:
        genres += (_choice(rng, tuple(g for g in GENRES if g != genre)),)
    style = STYLES[genre]
    title = words.make_title(rng, genre)
    width = int(_choice(rng, WIDTHS))
    weights = np.asarray(style.placements) / sum(style.placements)
    return PosterPlan(
        seed=seed,
        index=index,
        title=title,
        genres=genres,
        year=int(rng.integers(1955, 2026)),
        width=width,
        height=width * 3 // 2,
        format="JPEG" if rng.random() < _JPEG_SHARE else "PNG",
        background=_choice(rng, style.backgrounds),
        subject=(subject := _choice(rng, style.subjects)),
        shape=shape_for(subject, _choice(rng, style.shapes)),
        placement=PLACEMENTS[int(rng.choice(3, p=weights))],
        face=_choice(rng, style.fonts),
        upper=bool(rng.random() < style.upper),
        two_lines=bool(len(title.split()) > 1 and (rng.random() < 0.4 or len(title) > 18)),
        align_left=bool(rng.random() < style.align_left),
        title_color=_choice(rng, style.title_colors),
        credits=bool(rng.random() < 0.8),
        tagline=words.make_tagline(rng, genre) if rng.random() < 0.45 else None,
    )


def _split(title: str, two_lines: bool) -> list[str]:
    """One line, or two split at the word boundary that balances their lengths."""
    parts = title.split()
    if not two_lines or len(parts) < 2:
        return [title]
    best = min(range(1, len(parts)), key=lambda k: abs(len(" ".join(parts[:k])) - len(" ".join(parts[k:]))))
    return [" ".join(parts[:best]), " ".join(parts[best:])]


def _fit_size(lines: list[str], face: str, tracking: float, avail: float, cap: int) -> int:
    widest = max(line_width(s, face, 100, tracking) for s in lines)
    size = min(cap, int(100 * avail / widest))
    while size > 8 and max(line_width(s, face, size, tracking) for s in lines) > avail:
        size -= 1
    return size


def _rgb(c) -> np.ndarray:
    return np.asarray(c, np.float32) / 255.0


def _legible_color(canvas: np.ndarray, coverage: np.ndarray, preferred: np.ndarray) -> np.ndarray:
    """Keep the preferred text colour unless the background under it is too close: then white or black."""
    under = canvas[coverage > 0.5]
    if not len(under) or np.median(contrast_ratio(under, preferred)) >= 3.0:
        return preferred
    white, black = np.ones(3, np.float32), np.zeros(3, np.float32)
    return (
        white if np.median(contrast_ratio(under, white)) >= np.median(contrast_ratio(under, black)) else black
    )


def _place_subject(
    plan: PosterPlan, canvas: np.ndarray, zone: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Composite the subject inside the vertical ``zone`` the text leaves; returns canvas and alpha."""
    rng = _rng(plan, _SUBJECT)
    style = STYLES[plan.genre]
    h, w = plan.height, plan.width
    z0, z1 = zone
    max_h = int(min(h * 0.62, max(h * 0.25, z1 - z0)))
    subject = make_subject(
        plan.subject, plan.shape, rng, int(w * rng.uniform(0.55, 0.85)), max_h, style.grade
    )
    sh, sw = subject.alpha.shape
    slack = max(0.0, (z1 - z0) - sh)
    y = int(z0 + slack * rng.uniform(0.2, 0.8)) if z1 - z0 >= sh else int((z0 + z1 - sh) / 2)
    x = int(w * (0.5 + rng.uniform(-0.12, 0.12)) - sw / 2)
    alpha = paste_mask((h, w), subject.alpha, x, y)
    region = ink_slices(alpha)
    if region is None:  # wholly off the canvas: the zone and size ranges above rule it out
        return canvas, alpha
    ys, xs = region
    rgb = subject.rgb[ys.start - y : ys.stop - y, xs.start - x : xs.stop - x]
    if plan.subject == "horse":
        # A silhouette reads only against its backdrop: dark figure on light, pale figure on dark.
        lum = float(np.average(canvas[region].mean(axis=2), weights=alpha[region] + 1e-6))
        if lum < 0.35:
            rgb = 1.0 - rgb * 1.2
    patch = canvas[region]
    patch += (rgb - patch) * alpha[region][..., None]
    return canvas, alpha


def _title_block(
    plan: PosterPlan, rng: np.random.Generator, bottom_limit: float
) -> tuple[list[Glyphs], list[tuple[int, int]], int, float]:
    """Lines, their baseline origins on the canvas, the font size and the tracking."""
    style = STYLES[plan.genre]
    h, w = plan.height, plan.width
    text = plan.title.upper() if plan.upper else plan.title
    tracking = style.tracking * (1.0 if plan.upper else 0.3)
    avail = w * rng.uniform(0.78, 0.88)
    cap = int(h * rng.uniform(0.075, 0.105))
    lines = _split(text, plan.two_lines)
    size = _fit_size(lines, plan.face, tracking, avail, cap)
    if len(lines) == 1 and size < h * 0.05 and len(text.split()) > 1:
        lines = _split(text, True)
        size = _fit_size(lines, plan.face, tracking, avail, cap)
    glyphs = [render_line(s, plan.face, size, tracking) for s in lines]
    leading = int(size * 1.15)
    # Baselines relative to the first one; ink top and bottom of the whole block.
    tops = [i * leading + g.origin[1] for i, g in enumerate(glyphs)]
    bottoms = [t + g.height for t, g in zip(tops, glyphs, strict=True)]
    block_h = max(bottoms) - min(tops)
    if plan.placement == "top":
        top = h * rng.uniform(0.06, 0.1)
    elif plan.placement == "bottom":
        top = bottom_limit - block_h
    else:
        top = h * rng.uniform(0.44, 0.54) - block_h / 2
    by0 = int(top - min(tops))
    margin = (w - avail) / 2
    origins = []
    for i, g in enumerate(glyphs):
        left = margin if plan.align_left else (w - g.width) / 2
        origins.append((int(left - g.origin[0]), by0 + i * leading))
    return glyphs, origins, size, tracking


@dataclass
class _Layout:
    """Where the text goes, decided before any pixel is drawn (it depends on no pixel)."""

    glyphs: list[Glyphs]
    origins: list[tuple[int, int]]  # baseline start of each title line on the canvas
    size: int
    tracking: float
    credits: list[str]
    credit_size: int
    credit_leading: int
    credits_top: float
    tagline: Glyphs | None
    tagline_y: int

    @property
    def title_span(self) -> tuple[int, int]:
        tops = [oy + g.origin[1] for g, (_, oy) in zip(self.glyphs, self.origins, strict=True)]
        return min(tops), max(t + g.height for t, g in zip(tops, self.glyphs, strict=True))


def _layout(plan: PosterPlan) -> _Layout:
    h, w = plan.height, plan.width
    rng = _rng(plan, _TEXT)
    credits = words.make_credits(rng, plan.title, plan.year) if plan.credits else []
    credit_size = max(9, round(h * 0.0125))
    credit_leading = int(credit_size * 1.3)
    credits_top = h - h * 0.03 - len(credits) * credit_leading if credits else h - h * 0.02
    tagline = None
    if plan.tagline:
        tagline = render_line(plan.tagline, "DejaVuSerif-Italic", max(11, round(h * 0.022)))
        tagline = tagline if tagline.width <= w * 0.9 else None
    # A tagline sits at whichever end the title leaves free.
    tag_bottom = tagline is not None and plan.placement == "top"
    tagline_y = int(credits_top - h * 0.02 - tagline.height) if tag_bottom else int(h * 0.035)
    title_floor = credits_top - h * 0.03
    glyphs, origins, size, tracking = _title_block(plan, rng, title_floor)
    return _Layout(
        glyphs, origins, size, tracking, credits, credit_size, credit_leading, credits_top, tagline, tagline_y
    )


def _subject_zone(plan: PosterPlan, lay: _Layout) -> tuple[float, float]:
    """Vertical span for the subject: clear of the top text, may tuck under a middle or bottom title."""
    h = plan.height
    t0, t1 = lay.title_span
    free_top = lay.tagline_y + lay.tagline.height if lay.tagline is not None and lay.tagline_y < h / 2 else 0
    free_bottom = lay.tagline_y if lay.tagline is not None and lay.tagline_y > h / 2 else lay.credits_top
    gap = h * 0.025
    if plan.placement == "top":
        return t1 + gap, free_bottom - gap
    if plan.placement == "bottom":
        return free_top + gap + h * 0.02, t0 + (t1 - t0) * 0.4
    return free_top + gap + h * 0.02, free_bottom - gap


def render_poster(plan: PosterPlan, subject: bool = True) -> RenderedPoster:
    """Draw ``plan``; ``subject=False`` leaves the subject out and changes nothing else."""
    style = STYLES[plan.genre]
    h, w = plan.height, plan.width
    lay = _layout(plan)
    canvas = make_background(plan.background, _rng(plan, _BACKGROUND), h, w, style.palette)
    layers = ["background"]
    fg_alpha = np.zeros((h, w), np.float32)
    if subject:
        canvas, fg_alpha = _place_subject(plan, canvas, _subject_zone(plan, lay))
        layers.append("subject")
    fx = _rng(plan, _EFFECTS)
    canvas = vignette(canvas, style.vignette * fx.uniform(0.7, 1.1))
    canvas += fx.standard_normal((h, w, 1), dtype=np.float32) * np.float32(fx.uniform(0.006, 0.02))
    canvas = np.clip(canvas, 0, 1)

    canvas, inks, outline, lines = _draw_title(plan, lay, canvas, _rng(plan, _TITLE_FX))
    layers.append("title")
    rendered = RenderedPoster(
        plan=plan,
        image=canvas,
        title_mask=np.maximum.reduce(inks) >= 0.5,
        foreground_mask=fg_alpha >= 0.5,
        title_lines=lines,
        title_line_boxes=[mask_box(m >= 0.5) for m in inks],
        font_size=lay.size,
        outline=outline,
        layers=layers,
    )
    if lay.credits:
        _draw_credits(rendered, lay, style.credits_color)
    if lay.tagline is not None:
        _draw_tagline(rendered, lay)
    rendered.image = np.clip(np.round(rendered.image * 255), 0, 255).astype(np.uint8)
    return rendered


def _draw_title(
    plan: PosterPlan, lay: _Layout, canvas: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray], bool, list[str]]:
    """Shadow, glow, outline, fill (back to front); an outline only where legibility needs one.

    Returns the canvas, each line's ink coverage (fill plus outline), whether it was outlined
    and the lines' text.
    """
    style = STYLES[plan.genre]
    h, w = plan.height, plan.width
    glyphs, size = lay.glyphs, lay.size

    def place(attr: str) -> list[np.ndarray]:
        return [
            paste_mask((h, w), getattr(g, attr), ox + g.origin[0], oy + g.origin[1])
            for g, (ox, oy) in zip(glyphs, lay.origins, strict=True)
        ]

    fill = np.maximum.reduce(place("fill"))
    color = _rgb(plan.title_color)
    under = canvas[fill > 0.5]
    low = float(np.mean(contrast_ratio(under, color) < 3.0)) if len(under) else 0.0
    busy = float(under.std()) if len(under) else 0.0
    outline_color = _rgb(style.outline) if style.outline else None
    if outline_color is None and low > 0.15:
        other = [_rgb(c) for c in style.title_colors if c != plan.title_color]
        better = [c for c in other if np.mean(contrast_ratio(under, c) < 3.0) < 0.05]
        if better:
            color = better[0]
        else:
            outline_color = np.zeros(3, np.float32) if color.mean() > 0.5 else np.ones(3, np.float32)
    if outline_color is not None:
        stroke = max(2, round(size * 0.05))
        glyphs = [render_line(g.text, plan.face, size, lay.tracking, stroke) for g in glyphs]
    inks = place("ink")
    ink, fill = np.maximum.reduce(inks), np.maximum.reduce(place("fill"))
    if busy > 0.12 or rng.random() < 0.3:
        off = max(2, round(size * 0.05))
        shadow = blur(np.roll(ink, (off, off), axis=(0, 1)), size * 0.06)
        canvas = over(canvas, np.zeros(3, np.float32), shadow * 0.7)
    if style.glow is not None:
        canvas = np.clip(canvas + _rgb(style.glow) * blur(ink, size * 0.25)[..., None] * 0.8, 0, 1)
    if outline_color is not None:
        canvas = over(canvas, outline_color, ink)
    if plan.genre in ("scifi", "action") and rng.random() < 0.6:
        # Metallic fill: lighter at the top of the title block.
        x0, y0, x1, y1 = mask_box(fill > 0.5)
        t = np.clip((np.arange(h, dtype=np.float32) - y0) / max(1, y1 - y0), 0, 1)[:, None, None]
        top = color * 0.45 + 0.55
        canvas = over(canvas, top + (color - top) * t, fill)
    else:
        canvas = over(canvas, color, fill)
    return canvas, inks, outline_color is not None, [g.text for g in glyphs]


def _draw_credits(r: RenderedPoster, lay: _Layout, color) -> None:
    h, w = r.image.shape[:2]
    coverage = np.zeros((h, w), np.float32)
    y = int(lay.credits_top)
    for text in lay.credits:
        natural = line_width(text, "DejaVuSans", lay.credit_size)
        patch = condensed_line(text, "DejaVuSans", lay.credit_size, min(0.72, w * 0.88 / natural))
        coverage = np.maximum(coverage, paste_mask((h, w), patch, (w - patch.shape[1]) // 2, y))
        y += lay.credit_leading
    rgb = _legible_color(r.image, coverage, _rgb(color))
    r.image = over(r.image, rgb, coverage)
    r.credits_text = lay.credits
    r.credits_box = mask_box(coverage >= 0.5)
    r.layers.append("credits")


def _draw_tagline(r: RenderedPoster, lay: _Layout) -> None:
    h, w = r.image.shape[:2]
    g = lay.tagline
    coverage = paste_mask((h, w), g.ink, (w - g.width) // 2, lay.tagline_y)
    rgb = _legible_color(r.image, coverage, np.ones(3, np.float32) * 0.92)
    r.image = over(r.image, rgb, coverage)
    r.tagline_box = mask_box(coverage >= 0.5)
    r.layers.append("tagline")
