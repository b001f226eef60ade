"""Storage: the DuckDB file, blob files beside it, and the resource that holds both."""

from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.database import Database, DatabaseBusyError
from poster_assets.storage.resource import PosterStore

__all__ = ["BlobStore", "Database", "DatabaseBusyError", "PosterStore"]
