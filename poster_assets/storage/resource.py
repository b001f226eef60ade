"""The one resource behind which all storage lives."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from poster_assets import settings
from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.database import Database


class PosterStore(dg.ConfigurableResource):
    """Where poster-assets keeps its DuckDB file and blob files.

    ``home`` defaults to ``$POSTER_ASSETS_HOME`` (or ``./poster_data``). The database is
    ``<home>/poster_assets.duckdb``; originals, thumbnails, depth maps and masks live under
    ``<home>/blobs``. Swapping this resource is the seam for object storage later.
    """

    home: str | None = None
    lock_timeout_s: float = 600.0

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve() if self.home else settings.home_dir()

    @property
    def db_path(self) -> Path:
        return self.home_path / "poster_assets.duckdb"

    @property
    def db(self) -> Database:
        return Database(self.db_path, self.lock_timeout_s)

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(self.home_path)

    @property
    def batches_dir(self) -> Path:
        return self.home_path / "batches"
