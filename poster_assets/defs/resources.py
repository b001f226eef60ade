"""The resources every domain uses: the store and the models. Each *is* the plain object the code
outside ``defs/`` works with (a ``Store``, a ``Models``) with Dagster config on top, so assets pass
it straight to that code and nothing below this folder knows about Dagster."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from poster_assets import settings
from poster_assets.models.hub import Models
from poster_assets.storage.store import DEFAULT_LOCK_TIMEOUT_S, Store

# Steps that hold the DuckDB file for their whole length (dbt's build, the index's neighbours):
# the instance config the project ships (`cli/runs.py`) limits every pool to 1, so they queue in
# Dagster instead of meeting on the file lock.
DB_POOL = "poster_db"
# The per-batch steps: minutes of decoding and inference, the file opened only for one short
# transaction per chunk (a writer waits for the lock, `storage/database.py`). Their limit is how
# many batches extract at once: 1 on a laptop, where one batch keeps every core busy; one per
# worker process on a cluster (`deploy/celery`).
BATCH_POOL = "poster_batch"


class PosterStore(dg.ConfigurableResource, Store):
    """The home folder: DuckDB file, blob files, batch manifests, indexes and models.

    ``home`` defaults to ``$POSTER_ASSETS_HOME`` (or ``./poster_data``), read when a run uses it.
    Swapping this resource is the seam for shared or object storage later.
    """

    home: str | None = None
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S

    @property
    def home_path(self) -> Path:  # type: ignore[override]
        return Path(self.home).expanduser().resolve() if self.home else settings.home_dir()


class ModelsResource(dg.ConfigurableResource, Models):
    """The registry-backed model runners. ``models_dir`` defaults to ``<home>/models``: pulled
    weights, the user manifest that can add model versions, trained encoders, the OpenVINO cache."""

    models_dir: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.models_dir).expanduser().resolve() if self.models_dir else settings.models_dir()


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"store": PosterStore(), "models": ModelsResource()})
