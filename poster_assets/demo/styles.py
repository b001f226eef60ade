"""Genre styles: palette, backgrounds, subjects, fonts and layout tendencies per genre."""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class GenreStyle:
    """How a primary genre looks. Weights are relative; tuples are chosen from uniformly."""

    name: str
    backgrounds: tuple[str, ...]
    palette: tuple[RGB, ...]  # background colours, dark to light or as the kind expects
    title_colors: tuple[RGB, ...]
    outline: RGB | None  # always-on title outline, None = only where contrast needs one
    fonts: tuple[str, ...]
    placements: tuple[float, float, float]  # top, middle, bottom
    subjects: tuple[str, ...]
    shapes: tuple[str, ...]
    grade: str  # colour grade applied to the subject
    upper: float = 1.0  # probability of an upper-case title
    tracking: float = 0.0  # extra letter spacing, fraction of the font size
    align_left: float = 0.0  # probability of a left-aligned title
    vignette: float = 0.3
    glow: RGB | None = None
    credits_color: RGB = (225, 225, 225)


STYLES: dict[str, GenreStyle] = {
    s.name: s
    for s in (
        GenreStyle(
            name="horror",
            backgrounds=("fog", "radial", "texture"),
            palette=((8, 6, 8), (40, 10, 12), (70, 70, 75)),
            title_colors=((196, 22, 28), (232, 226, 210)),
            outline=None,
            fonts=("DejaVuSerif-Bold", "DejaVuSans-Bold"),
            placements=(0.15, 0.2, 0.65),
            subjects=("camera", "chelsea", "retina", "astronaut", "horse"),
            shapes=("blob", "ellipse", "arch"),
            grade="dark",
            upper=0.9,
            tracking=0.04,
            vignette=0.75,
            credits_color=(170, 160, 160),
        ),
        GenreStyle(
            name="scifi",
            backgrounds=("starfield", "hubble", "starfield"),
            palette=((2, 4, 16), (10, 30, 70), (60, 20, 90)),
            title_colors=((120, 235, 255), (235, 245, 255)),
            outline=None,
            fonts=("DejaVuSans-Bold", "DejaVuSansMono-Bold"),
            placements=(0.6, 0.15, 0.25),
            subjects=("rocket", "astronaut", "moon"),
            shapes=("ellipse", "circle", "blob"),
            grade="cool",
            upper=1.0,
            tracking=0.14,
            vignette=0.4,
            glow=(40, 160, 255),
            credits_color=(170, 200, 230),
        ),
        GenreStyle(
            name="romance",
            backgrounds=("gradient", "radial", "bokeh"),
            palette=((250, 170, 150), (240, 120, 140), (255, 220, 170)),
            title_colors=((255, 255, 255), (120, 20, 50)),
            outline=None,
            fonts=("DejaVuSerif-BoldItalic", "DejaVuSerif-Bold"),
            placements=(0.25, 0.5, 0.25),
            subjects=("astronaut", "chelsea", "coffee"),
            shapes=("ellipse", "blob", "arch"),
            grade="warm",
            upper=0.35,
            tracking=0.02,
            vignette=0.2,
            credits_color=(90, 30, 50),
        ),
        GenreStyle(
            name="comedy",
            backgrounds=("flat", "sunburst", "halftone"),
            palette=((255, 214, 40), (80, 190, 250), (255, 255, 255)),
            title_colors=((220, 30, 40), (25, 60, 170), (20, 20, 20)),
            outline=(255, 255, 255),
            fonts=("DejaVuSans-Bold", "DejaVuSans-BoldOblique"),
            placements=(0.6, 0.15, 0.25),
            subjects=("chelsea", "coffee", "astronaut"),
            shapes=("circle", "blob", "ellipse"),
            grade="vivid",
            upper=0.7,
            vignette=0.0,
            credits_color=(30, 30, 30),
        ),
        GenreStyle(
            name="western",
            backgrounds=("sunset", "texture", "gradient"),
            palette=((60, 30, 12), (190, 110, 50), (240, 200, 140)),
            title_colors=((250, 230, 190), (70, 35, 15)),
            outline=None,
            fonts=("DejaVuSerif-Bold", "DejaVuSansMono-Bold"),  # mono bold reads as a slab serif
            placements=(0.4, 0.1, 0.5),
            subjects=("horse", "horse", "camera", "chelsea"),
            shapes=("arch", "ellipse"),
            grade="sepia",
            upper=1.0,
            tracking=0.1,
            vignette=0.55,
            credits_color=(235, 215, 180),
        ),
        GenreStyle(
            name="documentary",
            backgrounds=("flat", "texture", "gradient"),
            palette=((235, 235, 228), (40, 60, 55), (200, 210, 205)),
            title_colors=((20, 20, 20), (250, 250, 250)),
            outline=None,
            fonts=("DejaVuSansMono-Bold", "DejaVuSans-Bold"),
            placements=(0.45, 0.2, 0.35),
            subjects=("coffee", "camera", "moon", "rocket", "chelsea"),
            shapes=("rect", "circle", "ellipse"),
            grade="natural",
            upper=0.4,
            tracking=0.0,
            align_left=0.7,
            vignette=0.0,
            credits_color=(110, 110, 110),
        ),
        GenreStyle(
            name="action",
            backgrounds=("streaks", "texture", "gradient"),
            palette=((10, 40, 55), (230, 110, 20), (30, 30, 30)),
            title_colors=((255, 150, 30), (245, 245, 245)),
            outline=(15, 15, 15),
            fonts=("DejaVuSans-BoldOblique", "DejaVuSans-Bold"),
            placements=(0.2, 0.35, 0.45),
            subjects=("rocket", "astronaut", "horse", "camera"),
            shapes=("blob", "ellipse"),
            grade="teal_orange",
            upper=1.0,
            tracking=0.03,
            vignette=0.5,
            credits_color=(210, 210, 210),
        ),
        GenreStyle(
            name="drama",
            backgrounds=("gradient", "fog", "flat"),
            palette=((40, 50, 70), (120, 130, 140), (210, 200, 185)),
            title_colors=((245, 240, 230), (30, 30, 40)),
            outline=None,
            fonts=("DejaVuSerif-Bold", "DejaVuSerif-BoldItalic", "DejaVuSans-Bold"),
            placements=(0.35, 0.3, 0.35),
            subjects=("astronaut", "camera", "chelsea", "coffee"),
            shapes=("ellipse", "arch", "rect"),
            grade="muted",
            upper=0.5,
            tracking=0.05,
            align_left=0.25,
            vignette=0.35,
            credits_color=(215, 210, 200),
        ),
    )
}

GENRES: tuple[str, ...] = tuple(STYLES)
PLACEMENTS: tuple[str, ...] = ("top", "middle", "bottom")
