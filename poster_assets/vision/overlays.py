"""Small preview panels of one poster's extraction, for the Dagster UI's markdown previews."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from poster_assets.vision.roles import ROLE_BACKGROUND, ROLE_OTHER, ROLE_SUBJECT, ROLE_TITLE, LayerInfo
from poster_assets.vision.text_ink import as_box
from poster_assets.vision.title import TitleChoice

PANEL_WIDTH = 160
_ROLE_COLOURS = {
    ROLE_TITLE: (230, 40, 40),
    ROLE_SUBJECT: (60, 200, 90),
    ROLE_BACKGROUND: (40, 60, 140),
}
_OCR_COLOUR = (255, 220, 0)
_TITLE_BOX_COLOUR = (255, 80, 80)
_OUTLINE_COLOUR = (255, 255, 255)
# Layers with no role (or plain label maps): a dark-to-light ramp by depth rank.
_RANK_RAMP = cv2.applyColorMap(np.linspace(40, 230, 8).astype(np.uint8).reshape(-1, 1), cv2.COLORMAP_CIVIDIS)


def depth_colormap(depth: np.ndarray) -> np.ndarray:
    """RGB uint8 rendering of a [0, 1] depth map (inferno: near = bright)."""
    d8 = (np.clip(np.nan_to_num(depth), 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(d8, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def _rank_colour(rank: int, n: int) -> tuple[int, int, int]:
    i = round(rank * (len(_RANK_RAMP) - 1) / max(1, n - 1))
    b, g, r = (int(v) for v in _RANK_RAMP[i, 0])
    return r, g, b


def layers_colored(layers: np.ndarray | Sequence[LayerInfo]) -> np.ndarray:
    """RGB uint8: a label map coloured by label (0 = farthest = darkest), or LayerInfos by role."""
    if isinstance(layers, np.ndarray):
        labels = layers.astype(np.int64)
        n = int(labels.max()) + 1 if labels.size else 1
        lut = np.array([_rank_colour(i, n) for i in range(n)], dtype=np.uint8)
        return lut[labels]
    out = np.zeros((*layers[0].mask.shape, 3), dtype=np.uint8)
    n = len(layers)
    for info in sorted(layers, key=lambda li: li.depth_rank):
        out[info.mask] = _ROLE_COLOURS.get(info.role) or _rank_colour(info.depth_rank, n)
    return out


def _tile(rgb: np.ndarray, width: int) -> tuple[Image.Image, float]:
    scale = width / rgb.shape[1]
    height = max(1, round(rgb.shape[0] * scale))
    tile = Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), Image.Resampling.BILINEAR)
    return tile, scale


def _scaled(box: Sequence[float], scale: float) -> list[float]:
    return [v * scale for v in box]


def ocr_tile(rgb: np.ndarray, ocr_boxes: Sequence[Any] = (), width: int = PANEL_WIDTH) -> Image.Image:
    """The poster, ``width`` pixels wide, with its OCR boxes drawn in yellow."""
    tile, scale = _tile(rgb, width)
    draw = ImageDraw.Draw(tile)
    for item in ocr_boxes:
        box = item[0] if isinstance(item, tuple | list) and len(item) == 3 else item
        draw.rectangle(_scaled(as_box(box), scale), outline=_OCR_COLOUR)
    return tile


def extraction_panel(
    rgb: np.ndarray,
    depth: np.ndarray,
    layers: np.ndarray | Sequence[LayerInfo],
    title_box: TitleChoice | Sequence[int] | None = None,
    foreground_mask: np.ndarray | None = None,
    ocr_boxes: Sequence[Any] = (),
    width: int = PANEL_WIDTH,
) -> Image.Image:
    """original (OCR boxes) | depth | layers (title box red, foreground outline white), side by side."""
    original = ocr_tile(rgb, ocr_boxes, width)
    scale = width / rgb.shape[1]
    depth_tile, _ = _tile(depth_colormap(depth), width)
    layer_rgb = layers_colored(layers)
    if foreground_mask is not None:
        fg = (np.asarray(foreground_mask) > 0.5).astype(np.uint8)
        # Outline drawn at full resolution and then shrunk would vanish; draw it on a small copy.
        small_fg = cv2.resize(fg, (width, original.height), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(small_fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        layer_small = np.asarray(_tile(layer_rgb, width)[0]).copy()
        cv2.drawContours(layer_small, contours, -1, _OUTLINE_COLOUR, 1)
        layer_tile = Image.fromarray(layer_small)
    else:
        layer_tile, _ = _tile(layer_rgb, width)
    if title_box is not None:
        box = title_box.box if isinstance(title_box, TitleChoice) else as_box(title_box)
        ImageDraw.Draw(layer_tile).rectangle(_scaled(box, scale), outline=_TITLE_BOX_COLOUR, width=2)
    panel = Image.new("RGB", (3 * width, original.height), (0, 0, 0))
    for i, tile in enumerate((original, depth_tile, layer_tile)):
        panel.paste(tile, (i * width, 0))
    return panel


# One entry of a legend: how its swatch is drawn ("fill": a block of the colours side by side,
# "outline": a hollow box, "text": none), its colours and its label.
LegendItem = tuple[str, Sequence[tuple[int, int, int]], str]
_LEGEND_FONT_PX = 12
_LEGEND_ROW_H = 20
_SWATCH = 14


def _ramp(colours: np.ndarray) -> list[tuple[int, int, int]]:
    return [(int(r), int(g), int(b)) for r, g, b in colours]


def layer_legend_items() -> list[LegendItem]:
    """What the colours of ``extraction_panel`` mean, left tile to right."""
    depth = depth_colormap(np.linspace(0.0, 1.0, 6, dtype=np.float32).reshape(1, -1))[0]
    return [
        ("text", [], "each poster: original | depth | layers."),
        ("outline", [_OCR_COLOUR], "OCR boxes"),
        ("fill", _ramp(depth), "depth: far to near"),
        ("fill", [_ROLE_COLOURS[ROLE_BACKGROUND]], ROLE_BACKGROUND),
        ("fill", [_ROLE_COLOURS[ROLE_SUBJECT]], ROLE_SUBJECT),
        ("fill", [_ROLE_COLOURS[ROLE_TITLE]], ROLE_TITLE),
        ("fill", [_rank_colour(i, 4) for i in range(4)], f"{ROLE_OTHER}: far to near"),
        ("outline", [_TITLE_BOX_COLOUR], "title box"),
        # The outline is the foreground network's mask; the subject layer (green) is that mask
        # without the title ink, extended by depth where depth agrees, so the two can differ.
        ("outline", [_OUTLINE_COLOUR], "foreground mask"),
    ]


def _swatch_step(colours: Sequence[object]) -> int:
    """Width of one colour of a swatch: a single colour is a square, a ramp half-width blocks."""
    return _SWATCH if len(colours) == 1 else _SWATCH // 2


def legend(
    items: Sequence[LegendItem], width: int, background: tuple[int, int, int] = (32, 32, 32)
) -> Image.Image:
    """A strip ``width`` pixels wide with a swatch and a label per item, wrapped into rows."""
    font = ImageFont.load_default(size=_LEGEND_FONT_PX)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    placed: list[tuple[int, int, LegendItem]] = []
    x, row = 6, 0
    for item in items:
        item_w = _swatch_step(item[1]) * len(item[1]) + 4 + int(measure.textlength(item[2], font=font)) + 14
        if x + item_w > width and x > 6:
            x, row = 6, row + 1
        placed.append((x, row, item))
        x += item_w
    strip = Image.new("RGB", (width, (row + 1) * _LEGEND_ROW_H + 4), background)
    draw = ImageDraw.Draw(strip)
    for x, row, (kind, colours, label) in placed:
        y = 4 + row * _LEGEND_ROW_H
        step = _swatch_step(colours)
        for i, colour in enumerate(colours):
            box = [x + i * step, y, x + (i + 1) * step - 1, y + _SWATCH - 1]
            if kind == "outline":
                draw.rectangle(box, outline=colour, width=2)
            else:
                draw.rectangle(box, fill=colour)
        draw.text((x + step * len(colours) + 4, y), label, fill=(230, 230, 230), font=font)
    return strip


def with_legend(image: Image.Image, items: Sequence[LegendItem]) -> Image.Image:
    """``image`` with ``legend(items)`` drawn under it, as wide as the image."""
    strip = legend(items, image.width)
    out = Image.new("RGB", (image.width, image.height + strip.height))
    out.paste(image.convert("RGB"), (0, 0))
    out.paste(strip, (0, image.height))
    return out
