"""A batch partition nothing made: one added by hand ("Add a partition" in the UI) has no
manifest, so there are no files to ingest. Its run stops with one ``dg.Failure`` that says how
batches are made and how to remove the stray partition; the extractors, which it would leave
with nothing to read, stop with the same words instead of errors of their own."""

from __future__ import annotations

import dagster as dg

from poster_assets import settings
from poster_assets.ingest.batches import BatchManifest
from poster_assets.storage.store import Store


def _rows(store: Store, batch: str) -> int:
    if not store.db_path.exists():
        return 0
    return store.db.query("SELECT count(*) FROM raw_posters WHERE batch = ?", [batch])[0][0]


def stray_batch_failure(store: Store, batch: str, rows: int = 0) -> dg.Failure:
    """The failure of a run for ``batch``, which has no manifest (and ``rows`` rows)."""
    manifest = store.batches_dir / f"{batch}.json"
    remove = f"`poster-assets batches abandon {batch}`"
    if rows:
        first = (
            f"batch {batch!r} has lost its manifest ({manifest}), so its files cannot be read again; "
            f"its {rows} raw_posters rows are kept as they are. {remove} removes it and them."
        )
    else:
        first = (
            f"batch {batch!r} has no manifest ({manifest}): no files belong to it, so there is nothing "
            f"to ingest. A partition added by hand is not a batch; remove it with {remove}."
        )
    how = (
        "Batches are made from files, never by adding a partition: drop the posters into the inbox "
        f"folder {settings.inbox_dir(store.home_path)} ($POSTER_ASSETS_INBOX; with `inbox_sensor` "
        "turned on under Automation each pick-up becomes a batch and runs), or run "
        "`poster-assets ingest FOLDER`."
    )
    return dg.Failure(
        description=f"{first}\n\n{how}",
        metadata={"batch": batch, "manifest": dg.MetadataValue.path(str(manifest)), "rows": rows},
        allow_retries=False,
    )


def load_manifest(store: Store, batch: str) -> BatchManifest:
    """The manifest of ``batch``, or the failure that explains why a batch has none."""
    try:
        return BatchManifest.load(store.batches_dir, batch)
    except FileNotFoundError:
        raise stray_batch_failure(store, batch, _rows(store, batch)) from None


def require_batch(store: Store, batch: str) -> None:
    """Stop an extractor's run for a partition with neither a manifest nor rows (it was added by
    hand): there is nothing to extract, and the reason is the batch's, not the extractor's."""
    if (store.batches_dir / f"{batch}.json").exists():
        return
    if not _rows(store, batch):
        raise stray_batch_failure(store, batch)
