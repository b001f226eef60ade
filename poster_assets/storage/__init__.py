"""Storage: the DuckDB file, blob files beside it, and the ``Store`` that holds both."""

from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.database import Database, DatabaseBusyError
from poster_assets.storage.store import Store

__all__ = ["BlobStore", "Database", "DatabaseBusyError", "Store"]
