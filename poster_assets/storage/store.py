"""Everything a home folder holds: the database, blob files, batch manifests, indexes and
models. ``Store`` derives every location from ``home_path``; ``HomeStore`` is the plain one the
CLI and the Python API use, and the Dagster resource (``defs/resources.py``) is another, so the
code outside ``defs/`` takes a ``Store`` and never knows which."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from poster_assets import settings
from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.database import Database
from poster_assets.storage.schema import DB_FILE

# Readers and code outside Dagster wait this long for the file; writers inside Dagster queue in
# the `poster_db` pool instead, so they do not meet each other here.
DEFAULT_LOCK_TIMEOUT_S = 60.0


class Store:
    """A home folder (default ``$POSTER_ASSETS_HOME``, else ``./poster_data``): the DuckDB file
    ``poster_assets.duckdb``, blob files under ``blobs/``, batch manifests under ``batches/``,
    FAISS indexes under ``indexes/`` and models under ``models/``."""

    # Given by each implementation (a dataclass field, a resource's config); declared for type
    # checkers only, so that a pydantic-based resource does not take them as fields of its own.
    if TYPE_CHECKING:
        home_path: Path
        lock_timeout_s: float

    @staticmethod
    def at(home: str | Path | None = None, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> HomeStore:
        """The store at ``home``, or at ``$POSTER_ASSETS_HOME`` when None."""
        return HomeStore(Path(home) if home else settings.home_dir(), lock_timeout_s)

    @property
    def db_path(self) -> Path:
        return self.home_path / DB_FILE

    @property
    def db(self) -> Database:
        # Cheap: the schema is applied once per file and process, connections are per access.
        return Database(self.db_path, self.lock_timeout_s)

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(self.home_path)

    @property
    def batches_dir(self) -> Path:
        return self.home_path / "batches"

    @property
    def indexes_dir(self) -> Path:
        return self.home_path / "indexes"

    @property
    def models_dir(self) -> Path:
        return settings.models_dir(self.home_path)


@dataclass(frozen=True)
class HomeStore(Store):
    home_path: Path = field(default_factory=settings.home_dir)
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "home_path", Path(self.home_path).expanduser().resolve())
