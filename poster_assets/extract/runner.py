"""The loop every extractor shares.

Inside a batch an extractor touches only ok posters that have no ``extractions`` row for its
current version, so a re-run does no repeated work and a model change redoes everything it
produced. Results are written a chunk at a time, each chunk in one transaction together with
its ``extractions`` rows: a crash loses at most the chunk in flight, never leaves half of one.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poster_assets.ingest.decode import decode_image
from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.catalog import refresh_catalog, try_refresh, unapplied_extractions
from poster_assets.storage.database import Database
from poster_assets.storage.lake import Replace

log = logging.getLogger(__name__)

Rows = dict[str, list[dict[str, Any]]]  # table -> rows


@dataclass(frozen=True)
class PosterRef:
    poster_id: str
    original_path: str
    file_name: str


@dataclass
class Outcome:
    poster_id: str
    rows: Rows = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class ExtractionStats:
    asset: str
    version: str
    in_batch: int = 0
    up_to_date: int = 0
    processed: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def count(self, outcomes: Sequence[Outcome]) -> None:
        """Add a written chunk's outcomes."""
        for o in outcomes:
            if o.error:
                self.failed += 1
                self.errors.append((o.poster_id, o.error))
            else:
                self.processed += 1

    @property
    def posters_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds else 0.0


def batch_posters(db: Database, batch: str) -> list[PosterRef]:
    rows = db.query(
        "SELECT poster_id, original_path, file_name FROM raw_posters "
        "WHERE batch = ? AND status = 'ok' ORDER BY file_name",
        [batch],
    )
    return [PosterRef(*r) for r in rows]


def done_posters(db: Database, batch: str, versions: Mapping[str, str]) -> dict[str, set[str]]:
    """Per asset of ``versions`` (asset -> version), the batch's posters that have a record
    (ok or failed) at that version: one query for every asset."""
    done: dict[str, set[str]] = {asset: set() for asset in versions}
    if not versions:
        return done
    found = db.query(
        "SELECT e.asset, e.poster_id FROM extractions e JOIN raw_posters r USING (poster_id) "
        "WHERE r.batch = ? AND list_contains(?, e.asset || '=' || e.model_version)",
        [batch, [f"{a}={v}" for a, v in versions.items()]],
    )
    for asset, poster_id in found:
        done[asset].add(poster_id)
    # Chunks whose segments wait in the lake (the catalog was busy when they were written).
    if pending := unapplied_extractions(db, batch, versions):
        for asset, poster_id, version in pending:
            if versions[asset] == version:
                done[asset].add(poster_id)
    return done


def pending_posters(db: Database, batch: str, asset: str, version: str) -> tuple[list[PosterRef], int]:
    """(posters still to do at ``version``, how many ok posters the batch has)."""
    everything = batch_posters(db, batch)
    done = done_posters(db, batch, {asset: version})[asset]
    return [p for p in everything if p.poster_id not in done], len(everything)


def load_rgb(blobs: BlobStore, ref: PosterRef) -> np.ndarray:
    """The upright RGB poster, decoded exactly as at ingest."""
    return decode_image(
        blobs.abspath(ref.original_path).read_bytes(), max_pixels=2**62, min_side=1
    ).rgb_array()


ChunkFn = Callable[[Sequence[PosterRef]], list[Outcome]]


def guarded(one: Callable[[PosterRef], Rows]) -> ChunkFn:
    """Run ``one`` per poster; an exception fails that poster only, with its reason recorded."""

    def chunk(refs: Sequence[PosterRef]) -> list[Outcome]:
        out = []
        for ref in refs:
            t0 = time.perf_counter()
            try:
                out.append(Outcome(ref.poster_id, one(ref), seconds=time.perf_counter() - t0))
            except Exception as exc:  # noqa: BLE001 - one bad poster must not stop the batch
                log.warning("poster %s failed: %s", ref.file_name, traceback.format_exc(limit=3))
                out.append(Outcome(ref.poster_id, error=f"{type(exc).__name__}: {exc}"))
        return out

    return chunk


def batched(many: Callable[[Sequence[PosterRef]], list[Rows]]) -> ChunkFn:
    """Run a whole chunk through ``many`` (one batched model call); if that raises, redo the
    chunk one poster at a time so only the bad poster fails."""

    def chunk(refs: Sequence[PosterRef]) -> list[Outcome]:
        try:
            done = dict(zip((r.poster_id for r in refs), many(refs), strict=True))
        except Exception:  # noqa: BLE001 - find the poster that broke the batch
            log.warning("batch of %d failed; retrying one by one", len(refs), exc_info=True)
            return guarded(lambda r: many([r])[0])(refs)
        return guarded(lambda r: done[r.poster_id])(refs)

    return chunk


def run_extraction(
    db: Database,
    asset: str,
    version: str,
    batch: str,
    process: ChunkFn,
    chunk_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> ExtractionStats:
    with db.session(read_only=False):
        refresh_catalog(db, batch)  # what a step before left in the lake
        todo, total = pending_posters(db, batch, asset, version)
    stats = ExtractionStats(asset, version, in_batch=total, up_to_date=total - len(todo))
    t0 = time.perf_counter()
    for start in range(0, len(todo), chunk_size):
        outcomes = process(todo[start : start + chunk_size])
        write_chunk(db, batch, [(asset, version, outcomes)])
        stats.count(outcomes)
        if progress:
            progress(min(start + chunk_size, len(todo)), len(todo))
    refresh_catalog(db, batch)  # the steps after this one read the catalog
    stats.seconds = time.perf_counter() - t0
    return stats


def write_chunk(db: Database, batch: str, results: Sequence[tuple[str, str, list[Outcome]]]) -> None:
    """Write one chunk, (asset, version, outcomes) for each asset that worked on it, with its
    ``extractions`` rows, as one lake segment (all or nothing), then apply it to the catalog if
    the file is free within a moment. Idempotent: any number of runs (a redone chunk, two
    ``poster-assets run --all`` at once) may write the same chunk, and each segment replaces
    exactly the rows it holds."""
    now = dt.datetime.now(dt.UTC)
    tables: dict[str, list[dict[str, Any]]] = {}
    replaces: list[Replace] = []
    for asset, version, outcomes in results:
        ids = [o.poster_id for o in outcomes]
        for o in outcomes:
            for table, rows in o.rows.items():
                tables.setdefault(table, []).extend(rows)
        # A poster that failed before at this version may have left nothing; one that is being
        # redone must not keep stale detail rows beside the new ones (fewer OCR lines now).
        touched = dict.fromkeys(t for o in outcomes for t in o.rows)
        replaces += [Replace(table, version, ids) for table in touched]
        tables.setdefault("extractions", []).extend(
            {
                "asset": asset,
                "poster_id": o.poster_id,
                "model_version": version,
                "status": "failed" if o.error else "ok",
                "error": o.error,
                "batch": batch,
                "seconds": o.seconds,
                "extracted_at": now,
            }
            for o in outcomes
        )
    if not any(tables.values()):
        return
    db.lake.write_segment(batch, tables, replaces)
    try_refresh(db, batch)
