"""Grid of captioned thumbnails: the preview image Dagster shows for a batch."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

_CAPTION_H = 16


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
    cut to the tile width so a long file name never spills into its neighbour.
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
            text = caption
            while text and draw.textlength(text, font=font) > tile_width - 4:
                text = text[:-1]
            draw.text((x0 + 2, y0 + tile_height + 2), text, fill=(230, 230, 230), font=font)
    return sheet
