"""Remove values made by model versions that are no longer current.

Old versions are kept on purpose after a model change, so the two can be compared in SQL;
``poster-assets gc`` is the explicit step that drops them, rows and files together. What is
current comes from one place, ``extract.versions.current_versions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from poster_assets.extract.versions import CurrentVersions
from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.catalog import refresh_catalog
from poster_assets.storage.database import Database
from poster_assets.storage.lake import Lake
from poster_assets.storage.schema import BLOB_PATH_COLUMNS

# table -> columns holding blob paths
EXTRACTOR_TABLES: dict[str, tuple[str, ...]] = {
    t: BLOB_PATH_COLUMNS.get(t, ()) for t in ("ocr_text", "depth_maps", "foreground_masks", "layer_masks")
}
# One row per (poster, kind, version); each kind is current at its own version.
EMBEDDINGS_TABLE = "foreground_embeddings"


@dataclass
class GcReport:
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # (table, version) -> rows
    files: int = 0


def _stale_kinds(db: Database, kinds: dict[str, str]) -> list[tuple[str, str, int]]:
    """(kind, model_version, rows) of every embedding whose version is not its kind's current
    one; a kind that is not current at all (ssl without a promoted encoder) is stale whole."""
    return [
        (kind, version, n)
        for kind, version, n in db.query(
            f"SELECT kind, model_version, count(*) FROM {EMBEDDINGS_TABLE} GROUP BY ALL ORDER BY ALL"
        )
        if kinds.get(kind) != version
    ]


def _collect_lake(lake: Lake, versions: dict[str, str], stale_kinds: list[tuple[str, str, int]]) -> None:
    for table in EXTRACTOR_TABLES:
        lake.delete_rows(table, "model_version <> ?", [versions[table]])
    for kind, version, _ in stale_kinds:
        lake.delete_rows(EMBEDDINGS_TABLE, "kind = ? AND model_version = ?", [kind, version])
    stale = " OR ".join("(asset = ? AND model_version <> ?)" for _ in (*EXTRACTOR_TABLES, EMBEDDINGS_TABLE))
    lake.delete_rows(
        "extractions", stale, [v for a in (*EXTRACTOR_TABLES, EMBEDDINGS_TABLE) for v in (a, versions[a])]
    )


def collect_garbage(
    db: Database, blobs: BlobStore, current: CurrentVersions, dry_run: bool = False
) -> GcReport:
    """Drop every row (and file) that is not at its current version: the rows of each extractor
    table at another version than ``current.by_asset()[table]``, the ``foreground_embeddings``
    whose (kind, model_version) is not in ``current.kinds``, and the ``extractions`` records of
    all five assets at another version than their current one."""
    versions = current.by_asset()
    report = GcReport()
    if not dry_run:
        refresh_catalog(db)  # stale rows waiting in the lake are counted and removed too
    paths: set[str] = set()
    for table, path_cols in EXTRACTOR_TABLES.items():
        for version, n in db.query(
            f"SELECT model_version, count(*) FROM {table} WHERE model_version <> ? GROUP BY ALL",
            [versions[table]],
        ):
            report.rows[(table, version)] = n
        for col in path_cols:
            paths.update(
                p
                for (p,) in db.query(
                    f"SELECT DISTINCT {col} FROM {table} WHERE model_version <> ?", [versions[table]]
                )
            )
    stale_kinds = _stale_kinds(db, current.kinds)
    for _kind, version, n in stale_kinds:
        key = (EMBEDDINGS_TABLE, version)
        report.rows[key] = report.rows.get(key, 0) + n
    # A file is shared only within one version, but be safe: keep any path a current row uses.
    for table, path_cols in EXTRACTOR_TABLES.items():
        for col in path_cols:
            paths.difference_update(
                p
                for (p,) in db.query(
                    f"SELECT DISTINCT {col} FROM {table} WHERE model_version = ?", [versions[table]]
                )
            )
    report.files = len(paths)
    if dry_run or not report.rows:
        return report
    # The lake first: a crash before the catalog's commit leaves stale rows there, and the next
    # gc finds them and finishes; the catalog is never clean while the lake is not.
    _collect_lake(db.lake, versions, stale_kinds)
    with db.transaction() as conn:
        for table in EXTRACTOR_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE model_version <> ?", [versions[table]])
        for kind, version, _ in stale_kinds:
            conn.execute(
                f"DELETE FROM {EMBEDDINGS_TABLE} WHERE kind = ? AND model_version = ?", [kind, version]
            )
        for asset in (*EXTRACTOR_TABLES, EMBEDDINGS_TABLE):
            conn.execute(
                "DELETE FROM extractions WHERE asset = ? AND model_version <> ?", [asset, versions[asset]]
            )
        # Scores are a cache of what they were computed from, so they are not counted as data.
        conn.execute("DELETE FROM layer_scores WHERE layers_version <> ?", [current.layers])
    # Files go after the commit: a crash in between leaves orphan files, never rows without files.
    for p in paths:
        blobs.abspath(p).unlink(missing_ok=True)
    return report
