"""What assets and checks show in the UI: pictures (a markdown image from a data URI, which
Dagster renders) and tables (``MetadataValue.table``, which it renders with their schema)."""

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
_TABLE_ROWS = 50
_TYPES = {bool: "bool", int: "int", float: "float"}


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


def _cell(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], limit: int = _TABLE_ROWS
) -> dg.TableMetadataValue:
    """Rows as a UI table; column types are taken from the first row that has a value there.
    Only the first ``limit`` rows are kept (the event log holds every materialization's)."""
    kept = [[_cell(v) for v in row] for row in rows[:limit]]
    types = []
    for i in range(len(columns)):
        first = next((r[i] for r in kept if r[i] is not None), None)
        types.append(_TYPES.get(type(first), "string"))
    return dg.MetadataValue.table(
        records=[dg.TableRecord(dict(zip(columns, row, strict=True))) for row in kept],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, t) for c, t in zip(columns, types, strict=True)]),
    )


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
        meta["failures"] = table(["poster_id", "error"], stats.errors)
    return {**meta, **(extra or {})}
