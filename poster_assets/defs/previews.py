"""Pictures in asset metadata: Dagster renders a markdown image from a data URI."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import dagster as dg
from PIL import Image

from poster_assets.extract.runner import ExtractionStats
from poster_assets.storage.blobs import BlobStore
from poster_assets.vision.contact_sheet import contact_sheet

# The UI keeps metadata in the event log: keep previews well under a megabyte.
_MAX_PREVIEW_PX = 1100


def image_markdown(image: Image.Image, alt: str = "preview") -> dg.MetadataValue:
    image = image.convert("RGB")
    image.thumbnail((_MAX_PREVIEW_PX, _MAX_PREVIEW_PX))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    data = base64.b64encode(buf.getvalue()).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/jpeg;base64,{data})")


def thumbnail_sheet(blobs: BlobStore, items: Sequence[tuple[str, str]], limit: int = 24) -> Image.Image:
    """A contact sheet from (thumbnail relpath, caption) pairs."""
    tiles, captions = [], []
    for rel, caption in items[:limit]:
        with Image.open(blobs.abspath(rel)) as im:
            tiles.append(im.convert("RGB"))
        captions.append(caption)
    return contact_sheet(tiles, captions, columns=8, tile_width=128)


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], limit: int = 50
) -> dg.MetadataValue:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more")
    return dg.MetadataValue.md("\n".join(lines))


def extraction_metadata(stats: ExtractionStats, extra: dict | None = None) -> dict:
    """What every per-poster extractor reports: version, counts, speed and failures."""
    meta: dict = {
        "model_version": stats.version,
        "ok_posters_in_batch": stats.in_batch,
        "already_current": stats.up_to_date,
        "processed": stats.processed,
        "failed": stats.failed,
        "posters_per_second": round(stats.posters_per_s, 2),
    }
    if stats.errors:
        meta["failures"] = markdown_table(["poster_id", "error"], stats.errors)
    return {**meta, **(extra or {})}
