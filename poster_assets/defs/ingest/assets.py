"""``raw_posters``: every file of a batch, decoded or quarantined, as rows in DuckDB."""

import dagster as dg

from poster_assets.defs.metadata import image_markdown, table, thumbnail_sheet
from poster_assets.defs.partitions import batch_partitions
from poster_assets.defs.resources import DB_POOL, PosterStore
from poster_assets.ingest.batches import BatchManifest
from poster_assets.ingest.decode import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from poster_assets.ingest.ingest import ingest_batch
from poster_assets.ingest.names import db_text


class IngestConfig(dg.Config):
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Images with more pixels are quarantined as too large (decompression-bomb guard)."""
    min_side: int = DEFAULT_MIN_SIDE
    """Images whose shorter side is smaller are quarantined as too small."""
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    """Files larger than this (default 512 MiB) are quarantined as too large before a byte of
    them is read: neither hashed nor decoded."""


@dg.asset(
    partitions_def=batch_partitions,
    group_name="ingest",
    kinds={"duckdb", "pillow"},
    code_version="decode-v2",
    pool=DB_POOL,
)
def raw_posters(
    context: dg.AssetExecutionContext, store: PosterStore, config: IngestConfig
) -> dg.MaterializeResult:
    """Every file of an ingest batch: content-hash id, size, format, sidecar fields and status
    ``ok`` / ``quarantined`` (with the reason) / ``duplicate`` — one row per file. Sidecar values
    that were dropped are named in ``sidecar_error``; the metadata lists them, the sidecar lines
    that were skipped, and what the folder scan skipped (unreadable subfolders)."""
    manifest = BatchManifest.load(store.batches_dir, context.partition_key)
    source_dir = db_text(manifest.source_dir)
    context.log.info(f"ingesting {len(manifest.files)} files from {source_dir}")
    summary = ingest_batch(
        store.db,
        store.blobs,
        manifest,
        max_pixels=config.max_pixels,
        min_side=config.min_side,
        max_file_bytes=config.max_file_bytes,
        progress=lambda done, total: context.log.info(f"decoded {done}/{total}"),
    )
    metadata: dict[str, object] = {
        "files": summary.files,
        "new_rows": summary.new_rows,
        "already_ingested": summary.already_ingested,
        "ok": summary.status_counts["ok"],
        "quarantined": summary.status_counts["quarantined"],
        "duplicates": summary.status_counts["duplicate"],
        "skipped": len(summary.skipped),
        "sidecar_problems": len(summary.sidecar_problems),
        "source_dir": dg.MetadataValue.path(source_dir),
        "database": dg.MetadataValue.path(str(store.db_path)),
        "dagster/row_count": summary.new_rows,
    }
    if summary.quarantined:
        metadata["quarantine_reasons"] = table(["file", "reason"], summary.quarantined)
    if summary.sidecar_problems:
        metadata["sidecar_problem_list"] = table(["where", "problem"], summary.sidecar_problems)
    if summary.skipped:
        metadata["skipped_paths"] = table(["path", "reason"], summary.skipped)
    if summary.thumbnails:
        metadata["preview"] = image_markdown(
            thumbnail_sheet(store.blobs, summary.thumbnails), "batch contact sheet"
        )
    return dg.MaterializeResult(metadata=metadata)
