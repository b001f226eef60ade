"""Remove values made by model versions that are no longer current.

Old versions are kept on purpose after a model change, so the two can be compared in SQL;
``poster-assets gc`` is the explicit step that drops them, rows and files together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.database import Database

# table -> columns holding blob paths
EXTRACTOR_TABLES: dict[str, tuple[str, ...]] = {
    "ocr_text": (),
    "depth_maps": ("depth_path",),
    "foreground_masks": ("mask_path",),
    "layer_masks": ("labels_path",),
}


@dataclass
class GcReport:
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # (table, version) -> rows
    files: int = 0


def collect_garbage(
    db: Database, blobs: BlobStore, current: dict[str, str], dry_run: bool = False
) -> GcReport:
    """Drop every row (and file) of an extractor table whose version is not ``current[table]``."""
    report = GcReport()
    paths: set[str] = set()
    for table, path_cols in EXTRACTOR_TABLES.items():
        for version, n in db.query(
            f"SELECT model_version, count(*) FROM {table} WHERE model_version <> ? GROUP BY ALL",
            [current[table]],
        ):
            report.rows[(table, version)] = n
        for col in path_cols:
            paths.update(
                p
                for (p,) in db.query(
                    f"SELECT DISTINCT {col} FROM {table} WHERE model_version <> ?", [current[table]]
                )
            )
    # A file is shared only within one version, but be safe: keep any path a current row uses.
    for table, path_cols in EXTRACTOR_TABLES.items():
        for col in path_cols:
            paths.difference_update(
                p
                for (p,) in db.query(
                    f"SELECT DISTINCT {col} FROM {table} WHERE model_version = ?", [current[table]]
                )
            )
    report.files = len(paths)
    if dry_run:
        return report
    with db.transaction() as conn:
        for table in EXTRACTOR_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE model_version <> ?", [current[table]])
            conn.execute(
                "DELETE FROM extractions WHERE asset = ? AND model_version <> ?", [table, current[table]]
            )
    # Files go after the commit: a crash in between leaves orphan files, never rows without files.
    for p in paths:
        blobs.abspath(p).unlink(missing_ok=True)
    return report
