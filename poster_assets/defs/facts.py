"""What a per-batch asset holds for its partition now, read from the database.

A materialization describes the partition as it is after the run, not what the run added, so a
re-run with nothing to do shows the same totals, reasons and preview as the run that did the
work; the run's own counters (new rows, processed) are reported beside them. The totals are
``batch_state.storage_facts``'s, the ones `poster-assets batches list` shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from poster_assets.extract.runner import PosterRef
from poster_assets.ingest.batch_state import BatchFacts, storage_facts
from poster_assets.storage.store import Store

# The batch's ok posters: the ones every per-poster asset works on.
_OK_POSTERS = "SELECT poster_id FROM raw_posters WHERE batch = ? AND status = 'ok'"


def batch_facts(store: Store, batch: str, versions: Mapping[str, str] | None = None) -> BatchFacts:
    """The batch's rows by status and, with ``versions`` (asset -> current version), how many of
    its ok posters each extractor has a value or a failure for at that version."""
    return storage_facts(store.db, store.batches_dir, [batch], versions)[batch]


@dataclass(frozen=True)
class RawFacts:
    batch: BatchFacts
    quarantined: list[tuple[str, str]]  # (file name, reason)
    duplicates: list[tuple[str, str]]  # (file name, the file it copies)
    sidecar_errors: list[tuple[str, str]]  # (file name, the sidecar values dropped and why)
    decoders: list[str]
    thumbnails: list[tuple[str, str]]  # (thumbnail path, file name) of ok rows, by file name


def raw_facts(store: Store, batch: str, thumbnails: int = 24) -> RawFacts:
    with store.db.session():
        rows = store.db.query(
            "SELECT status, file_name, reason, duplicate_of, sidecar_error, decoder, thumbnail_path "
            "FROM raw_posters WHERE batch = ? ORDER BY file_name, source_uri",
            [batch],
        )
        facts = batch_facts(store, batch)
    return RawFacts(
        batch=facts,
        quarantined=[(name, reason or "") for status, name, reason, *_ in rows if status == "quarantined"],
        duplicates=[(name, dup or "") for status, name, _, dup, *_ in rows if status == "duplicate"],
        sidecar_errors=[(r[1], r[4]) for r in rows if r[4]],
        decoders=sorted({r[5] for r in rows}),
        thumbnails=[(r[6], r[1]) for r in rows if r[0] == "ok" and r[6]][:thumbnails],
    )


@dataclass(frozen=True)
class ExtractionFacts:
    """One extractor's partition: the batch's ok posters and what it holds for them."""

    asset: str
    version: str
    ok_posters: int
    current: int  # ok posters with a value at the current version
    failed: int  # ok posters whose record at the current version is a failure (not redone)
    rows: int  # rows of the asset's table for those posters at the current version(s)
    other_rows: int  # ... at other versions: replaced values, kept until `poster-assets gc`
    failures: list[tuple[str, str]]  # (file name, error), by file name

    @property
    def pending(self) -> int:
        """Ok posters with no record at the current version (a run was stopped, or the batch
        grew after this asset last ran)."""
        return self.ok_posters - self.current - self.failed


def _row_counts(
    store: Store, table: str, batch: str, version: str, kinds: Mapping[str, str] | None
) -> tuple[int, int]:
    """(rows at the current version, rows at others) of ``table`` for the batch's ok posters.
    Embeddings carry a version per kind (``kinds``); every other table the asset's own."""
    if kinds is None:
        current, params = "model_version = ?", [version]
    else:
        current, params = (
            "list_contains(?, kind || '=' || model_version)",
            [[f"{k}={v}" for k, v in kinds.items()]],
        )
    ((now, other),) = store.db.query(
        f"SELECT count(*) FILTER ({current}), count(*) FILTER (NOT ({current})) FROM {table} "
        f"WHERE poster_id IN ({_OK_POSTERS})",
        [*params, *params, batch],
    )
    return now, other


def extraction_facts(
    store: Store,
    asset: str,
    version: str,
    batch: str,
    kinds: Mapping[str, str] | None = None,
) -> ExtractionFacts:
    """The facts of ``asset`` (whose records are at ``version``, whose rows are in the table of
    its name, per embedding kind at ``kinds`` when given) for ``batch``."""
    facts = batch_facts(store, batch, {asset: version})
    rows, other = _row_counts(store, asset, batch, version, kinds)
    failures = store.db.query(
        "SELECT r.file_name, e.error FROM extractions e JOIN raw_posters r USING (poster_id) "
        "WHERE r.batch = ? AND r.status = 'ok' AND e.asset = ? AND e.model_version = ? "
        "AND e.status = 'failed' ORDER BY r.file_name",
        [batch, asset, version],
    )
    return ExtractionFacts(
        asset=asset,
        version=version,
        ok_posters=facts.ok,
        current=facts.extracted.get(asset, 0),
        failed=facts.failed.get(asset, 0),
        rows=rows,
        other_rows=other,
        failures=[(name, error or "") for name, error in failures],
    )


def current_posters(store: Store, asset: str, version: str, batch: str, limit: int) -> list[PosterRef]:
    """The first ``limit`` ok posters of the batch (by file name) that ``asset`` holds a value
    for at ``version``: what its preview shows, the same on every run."""
    found = store.db.query(
        "SELECT DISTINCT r.poster_id, r.original_path, r.file_name FROM raw_posters r "
        "JOIN extractions e USING (poster_id) WHERE r.batch = ? AND r.status = 'ok' AND e.asset = ? "
        "AND e.model_version = ? AND e.status = 'ok' ORDER BY r.file_name, r.poster_id LIMIT ?",
        [batch, asset, version, limit],
    )
    return [PosterRef(*r) for r in found]
