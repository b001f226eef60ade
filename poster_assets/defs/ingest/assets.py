"""``raw_posters``: every file of a batch, decoded or quarantined, as rows in DuckDB."""

import dagster as dg

from poster_assets.defs.batches import load_manifest
from poster_assets.defs.facts import raw_facts
from poster_assets.defs.metadata import image_markdown, table, table_definition, thumbnail_sheet
from poster_assets.defs.partitions import batch_partitions
from poster_assets.defs.resources import BATCH_POOL, PosterStore
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
    pool=BATCH_POOL,
    metadata=table_definition("raw_posters"),
)
def raw_posters(
    context: dg.AssetExecutionContext, store: PosterStore, config: IngestConfig
) -> dg.MaterializeResult:
    """Every file of an ingest batch: content-hash id, size, format, sidecar fields and status
    ``ok`` / ``quarantined`` (with the reason) / ``duplicate`` — one row per file. Sidecar values
    that were dropped are named in ``sidecar_error``; the metadata lists them, the sidecar lines
    that were skipped, and what the folder scan skipped (unreadable subfolders).

    Batches are made by the inbox sensor and `poster-assets ingest FOLDER`; a partition added by
    hand has no files, and its run fails saying so (`poster-assets batches abandon` removes it).
    """
    manifest = load_manifest(store, context.partition_key)
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
    # The batch as the table holds it now, whatever this run added: a re-run shows the same.
    facts = raw_facts(store, context.partition_key)
    batch = facts.batch
    # Sidecar lines that were skipped are read again each run (they have no row); the values
    # dropped from a file's record are in its row.
    in_rows = set(facts.sidecar_errors)
    sidecar_lines = [p for p in summary.sidecar_problems if p not in in_rows]
    sidecar_problems = sidecar_lines + facts.sidecar_errors
    metadata: dict[str, object] = {}
    if facts.thumbnails:
        metadata["preview"] = image_markdown(
            thumbnail_sheet(store.blobs, facts.thumbnails), "batch contact sheet"
        )
    metadata.update(
        {
            "files": batch.files,
            "ok": batch.ok,
            "quarantined": batch.quarantined,
            "duplicates": batch.duplicates,
            "skipped": len(summary.skipped),
            "sidecar_problems": len(sidecar_problems),
            "dagster/row_count": batch.rows,
            "decoder": ", ".join(facts.decoders),
            "source_dir": dg.MetadataValue.path(source_dir),
            "created_at": batch.created_at or "",
            "database": dg.MetadataValue.path(str(store.db_path)),
        }
    )
    if facts.quarantined:
        metadata["quarantine_reasons"] = table(["file", "reason"], facts.quarantined)
    if facts.duplicates:
        metadata["duplicate_files"] = table(["file", "duplicate_of"], facts.duplicates)
    if sidecar_problems:
        metadata["sidecar_problem_list"] = table(["where", "problem"], sidecar_problems)
    if summary.skipped:
        metadata["skipped_paths"] = table(["path", "reason"], summary.skipped)
    # What this run did.
    metadata["new_rows"] = summary.new_rows
    metadata["already_ingested"] = summary.already_ingested
    return dg.MaterializeResult(metadata=metadata)
