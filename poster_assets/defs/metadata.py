"""What assets and checks show in the UI: pictures (a markdown image from a data URI, which
Dagster renders) and tables (``MetadataValue.table``, which it renders with their schema).

Dagster 1.13 draws a markdown value in place on the asset page only while it is under 1,000
characters (``expandSmallValues`` in the UI's ``MetadataEntry``); a picture is always longer,
so it shows as a "[Show Markdown]" button that opens it. There is no image metadata kind.
Assets put their ``preview`` near the top, where that button is seen first."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import dagster as dg
from PIL import Image

from poster_assets.defs.facts import ExtractionFacts
from poster_assets.extract.runner import ExtractionStats
from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.columns import qualified_name, table_columns
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


def column_schema(table_name: str) -> dg.TableSchema:
    """The columns of a table of the store, with DuckDB's types, as ``storage.schema`` declares
    them (``storage.columns``): what the UI shows under "Columns"."""
    declared = table_columns(table_name)
    key = declared.primary_key
    columns = []
    for c in declared.columns:
        other = [f"primary key ({', '.join(key)})"] if c.name in key and len(key) > 1 else []
        constraints = dg.TableColumnConstraints(nullable=c.nullable, unique=key == (c.name,), other=other)
        columns.append(dg.TableColumn(c.name, c.type, description=c.description, constraints=constraints))
    return dg.TableSchema(columns=columns)


def table_definition(table_name: str) -> dict[str, object]:
    """Definition metadata of an asset that writes ``table_name``: its columns and its name."""
    return {
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(table_name)),
        "dagster/table_name": qualified_name(table_name),
    }


def extraction_metadata(
    facts: ExtractionFacts,
    stats: ExtractionStats,
    extra: dict | None = None,
    preview: dg.MetadataValue | None = None,
) -> dict:
    """What every per-poster extractor reports: its ``preview`` first, then its partition as it
    is now (from the database: ok posters, those with a value at the current version, failed,
    pending, rows, the failures), ``extra`` (versions, ...), and last what this run did."""
    meta: dict = {"preview": preview} if preview is not None else {}
    meta.update(
        {
            "model_version": facts.version,
            "ok_posters_in_batch": facts.ok_posters,
            "with_current_value": facts.current,
            "failed": facts.failed,
            "pending": facts.pending,
            "dagster/row_count": facts.rows,
            "rows_at_other_versions": facts.other_rows,
        }
    )
    if facts.failures:
        meta["failures"] = table(["file", "error"], facts.failures)
    meta.update(extra or {})
    meta.update(
        {
            "processed": stats.processed,
            "already_current": stats.up_to_date,
            "failed_this_run": stats.failed,
            "posters_per_second": round(stats.posters_per_s, 2),
        }
    )
    return meta
