"""Ingest one batch: hash, decode, keep the original and a thumbnail, write one row per file."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poster_assets.ingest.batches import BatchManifest, FileEntry
from poster_assets.ingest.decode import (
    DECODER_VERSION,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    DecodeError,
    decode_image,
)
from poster_assets.ingest.sidecar import load_sidecar, sidecar_fields
from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.database import Database
from poster_assets.storage.files import file_sha256

log = logging.getLogger(__name__)

THUMBNAIL_PX = 256
_COLUMNS = (
    "poster_id, source_uri, file_name, file_bytes, status, reason, duplicate_of, width, height, format, "
    "source_mode, frames, exif_rotated, title, genres, year, sidecar, original_path, thumbnail_path, "
    "batch, decoder, ingested_at"
)


@dataclass
class IngestSummary:
    batch: str
    files: int = 0
    new_rows: int = 0
    already_ingested: int = 0
    status_counts: Counter = field(default_factory=Counter)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    thumbnails: list[tuple[str, str]] = field(default_factory=list)  # (thumbnail relpath, file name)


ProgressFn = Callable[[int, int], None]


def _hash_file(entry: FileEntry) -> tuple[str | None, str | None]:
    try:
        # Streamed: a huge stray file is hashed in chunks, never read whole into memory.
        return file_sha256(Path(entry.path), use_cache=False), None
    except OSError as exc:
        return None, f"file could not be read: {exc.strerror or exc}"


def _decode_and_store(
    entry: FileEntry, poster_id: str, blobs: BlobStore, max_pixels: int, min_side: int
) -> dict[str, Any]:
    """Everything about one file that does not need the database."""
    path = Path(entry.path)
    try:
        data = path.read_bytes()
        decoded = decode_image(data, max_pixels=max_pixels, min_side=min_side)
    except DecodeError as exc:
        return {"status": "quarantined", "reason": str(exc)}
    except OSError as exc:
        return {"status": "quarantined", "reason": f"file could not be read: {exc.strerror or exc}"}
    thumb = decoded.image.copy()
    thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    return {
        "status": "ok",
        "reason": None,
        "width": decoded.width,
        "height": decoded.height,
        "format": decoded.format,
        "source_mode": decoded.source_mode,
        "frames": decoded.frames,
        "exif_rotated": decoded.exif_rotated,
        "original_path": blobs.store_file("originals", poster_id, path.suffix.lower() or ".img", path),
        "thumbnail_path": blobs.write_image("thumbs", poster_id, thumb, "JPEG", quality=85),
    }


def ingest_batch(
    db: Database,
    blobs: BlobStore,
    manifest: BatchManifest,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> IngestSummary:
    summary = IngestSummary(batch=manifest.batch, files=len(manifest.files))
    sidecar = load_sidecar(Path(manifest.sidecar)) if manifest.sidecar else {}
    workers = workers or min(4, os.cpu_count() or 1)
    db.ensure_schema()

    with ThreadPoolExecutor(workers) as pool:
        hashes = list(pool.map(_hash_file, manifest.files))
    known = _existing(db, [e.path for e in manifest.files])
    ok_ids = _ok_ids(db, [h for h, _ in hashes if h])

    rows: list[dict[str, Any]] = []
    to_decode: list[tuple[FileEntry, str]] = []
    seen_in_batch: dict[str, str] = {}
    now = dt.datetime.now(dt.UTC)
    for entry, (poster_id, read_error) in zip(manifest.files, hashes, strict=True):
        name = Path(entry.path).name
        record = sidecar.get(name)
        base = {
            "source_uri": entry.path,
            "file_name": name,
            "file_bytes": entry.size,
            "batch": manifest.batch,
            "sidecar": record,
            "ingested_at": now,
        }
        if poster_id is None:
            # Unreadable files still get a row; the id says why it is not a content hash.
            pid = "unreadable-" + hashlib.sha256(entry.path.encode()).hexdigest()[:16]
            rows.append({**base, "poster_id": pid, "status": "quarantined", "reason": read_error})
            continue
        if (poster_id, entry.path) in known:
            summary.already_ingested += 1
            continue
        first = ok_ids.get(poster_id) or seen_in_batch.get(poster_id)
        if first is not None:
            rows.append(
                {
                    **base,
                    "poster_id": poster_id,
                    "status": "duplicate",
                    "reason": f"same bytes as {Path(first).name}",
                    "duplicate_of": first,
                }
            )
            continue
        rows.append({**base, "poster_id": poster_id})
        to_decode.append((entry, poster_id))
        seen_in_batch[poster_id] = entry.path

    decoded: dict[str, dict[str, Any]] = {}
    done = 0
    with ThreadPoolExecutor(workers) as pool:
        futures = [
            (pid, pool.submit(_decode_and_store, entry, pid, blobs, max_pixels, min_side))
            for entry, pid in to_decode
        ]
        for pid, fut in futures:
            decoded[pid] = fut.result()
            done += 1
            if progress and (done % 50 == 0 or done == len(futures)):
                progress(done, len(futures))

    for row in rows:
        if "status" not in row:
            row.update(decoded[row["poster_id"]])
            if row["status"] != "ok":
                # A bad file's bytes are not a poster; a later good copy must not be called a duplicate.
                seen_in_batch.pop(row["poster_id"], None)

    summary.new_rows = _write_rows(db, rows)
    for row in rows:
        summary.status_counts[row["status"]] += 1
        if row["status"] == "quarantined":
            summary.quarantined.append((row["file_name"], row["reason"]))
        elif row["status"] == "ok":
            summary.thumbnails.append((row["thumbnail_path"], row["file_name"]))
    return summary


def _existing(db: Database, paths: list[str]) -> set[tuple[str, str]]:
    if not paths:
        return set()
    rows = db.query("SELECT poster_id, source_uri FROM raw_posters WHERE source_uri IN ?", [paths])
    return {(r[0], r[1]) for r in rows}


def _ok_ids(db: Database, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = db.query(
        "SELECT poster_id, min(source_uri) FROM raw_posters WHERE status = 'ok' AND poster_id IN ? "
        "GROUP BY poster_id",
        [ids],
    )
    return dict(rows)


def _write_rows(db: Database, rows: list[dict[str, Any]]) -> int:
    """One transaction per batch: a crash mid-write leaves none of the batch behind."""
    if not rows:
        return 0
    cols = [c.strip() for c in _COLUMNS.split(",")]
    values = []
    for row in rows:
        title, genres, year = sidecar_fields(row.get("sidecar"))
        row = {
            **row,
            "title": title,
            "genres": genres,
            "year": year,
            "sidecar": json.dumps(row["sidecar"], ensure_ascii=False) if row.get("sidecar") else None,
            "decoder": DECODER_VERSION,
        }
        values.append([row.get(c) for c in cols])
    placeholders = ", ".join("?" for _ in cols)
    with db.transaction() as conn:
        before = conn.execute("SELECT count(*) FROM raw_posters").fetchone()[0]
        # Two batches racing on the same bytes: the one committing second records a duplicate.
        ok_now = dict(
            conn.execute(
                "SELECT poster_id, min(source_uri) FROM raw_posters WHERE status = 'ok' AND poster_id IN ? "
                "GROUP BY poster_id",
                [[v[0] for v in values]],
            ).fetchall()
        )
        for v, row in zip(values, rows, strict=True):
            if row["status"] == "ok" and v[0] in ok_now and ok_now[v[0]] != v[1]:
                v[cols.index("status")] = row["status"] = "duplicate"
                v[cols.index("duplicate_of")] = row["duplicate_of"] = ok_now[v[0]]
                v[cols.index("reason")] = row["reason"] = f"same bytes as {Path(ok_now[v[0]]).name}"
        conn.executemany(
            f"INSERT INTO raw_posters ({_COLUMNS}) VALUES ({placeholders}) ON CONFLICT DO NOTHING", values
        )
        after = conn.execute("SELECT count(*) FROM raw_posters").fetchone()[0]
    return after - before
