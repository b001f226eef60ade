"""Grid of captioned thumbnails: the preview image Dagster shows for a batch."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

_CAPTION_H = 16
# Control (newline, tab, ESC, NUL), format (bidi overrides), line / paragraph separators and
# lone surrogates (file names that are not UTF-8): none of them is something to draw, and a
# newline makes Pillow treat the caption as multiline text, which it cannot measure.
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp", "Cs"}
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def caption_text(caption: object) -> str:
    """A caption as one drawable line: invisible characters become visible escapes."""
    text = str(caption)
    if all(unicodedata.category(ch) not in _INVISIBLE for ch in text):
        return text
    return "".join(
        _SHORT.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        if unicodedata.category(ch) in _INVISIBLE
        else ch
        for ch in text
    )


def _draw_caption(draw: ImageDraw.ImageDraw, xy: tuple[int, int], caption: object, width: int, font) -> None:
    text = caption_text(caption)[: max(1, width)]  # no glyph is narrower than a pixel
    for attempt in (text, text.encode("ascii", "backslashreplace").decode("ascii")):
        try:
            while attempt and draw.textlength(attempt, font=font) > width:
                attempt = attempt[:-1]
            draw.text(xy, attempt, fill=(230, 230, 230), font=font)
            return
        except (UnicodeError, ValueError, OSError):
            continue  # a glyph the font cannot take (the bitmap fallback font is Latin-1 only)


def contact_sheet(
    tiles: Sequence[Image.Image],
    captions: Sequence[str] | None = None,
    columns: int = 6,
    tile_width: int = 160,
    tile_height: int | None = None,
    background: tuple[int, int, int] = (32, 32, 32),
) -> Image.Image:
    """Lay ``tiles`` out in a grid, each scaled to fit ``tile_width`` x ``tile_height``.

    Tiles keep their aspect ratio (posters are 2:3; panels may be wider). Captions are
    cut to the tile width so a long file name never spills into its neighbour, and drawn on one
    line: a newline or other control character in a file name shows as an escape (``\\n``).
    """
    if not tiles:
        return Image.new("RGB", (tile_width, tile_width), background)
    tile_height = tile_height or int(tile_width * 1.5)
    captions = list(captions or [""] * len(tiles))
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    cell_h = tile_height + (_CAPTION_H if any(captions) else 0)
    sheet = Image.new("RGB", (columns * tile_width, rows * cell_h), background)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        x0, y0 = (i % columns) * tile_width, (i // columns) * cell_h
        fitted = tile.convert("RGB")
        fitted.thumbnail((tile_width - 4, tile_height - 4))
        sheet.paste(fitted, (x0 + (tile_width - fitted.width) // 2, y0 + (tile_height - fitted.height) // 2))
        if caption:
            _draw_caption(draw, (x0 + 2, y0 + tile_height + 2), caption, tile_width - 4, font)
    return sheet
