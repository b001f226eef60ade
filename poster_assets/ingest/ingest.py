"""Ingest one batch: hash, decode, keep the original and a thumbnail, write one row per file.

A bad file never stops the batch, and every file of the manifest gets a row:

- Before anything reads a file it is ``stat``-ed: what is not a regular file (a FIFO, a socket,
  a device, a dangling symlink, a symlink loop) is quarantined without being opened, and a file
  above ``max_file_bytes`` without being read. The file is then opened non-blocking and checked
  again on the open descriptor, so a file swapped for a FIFO in between is never read either.
- Hashing streams; decoding reads the (size-limited) file once.
- Copies of the same bytes are decoded once: when the bytes are a poster the first copy is
  ``ok`` and the others ``duplicate``; when they are not, every copy is quarantined with the
  same reason (an empty file is never the "original" of anything).
- Sidecar problems never stop the batch either: a bad record only loses its bad fields, which
  ``sidecar_error`` names; lines that could not be used are in ``IngestSummary.sidecar_problems``.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from poster_assets.ingest.batches import BatchManifest, FileEntry
from poster_assets.ingest.decode import (
    DECODER_VERSION,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    DecodeError,
    decode_image,
)
from poster_assets.ingest.names import db_text, fs_bytes
from poster_assets.ingest.sidecar import Sidecar, read_sidecar
from poster_assets.storage.blobs import BlobStore, ContentChangedError
from poster_assets.storage.catalog import refresh_catalog
from poster_assets.storage.database import Database

log = logging.getLogger(__name__)

THUMBNAIL_PX = 256
_COLUMNS = (
    "poster_id, source_uri, file_name, file_bytes, status, reason, duplicate_of, width, height, format, "
    "source_mode, frames, exif_rotated, title, genres, year, sidecar, original_path, thumbnail_path, "
    "batch, decoder, ingested_at, sidecar_error"
)
_BLOB_SUFFIX = re.compile(r"\.[a-z0-9]{1,10}")


@dataclass
class IngestSummary:
    batch: str
    files: int = 0
    new_rows: int = 0
    already_ingested: int = 0
    status_counts: Counter = field(default_factory=Counter)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    thumbnails: list[tuple[str, str]] = field(default_factory=list)  # (thumbnail relpath, file name)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): no file, so no row
    # (file name, or "sidecar line N", problem): sidecar values dropped and sidecar lines skipped
    sidecar_problems: list[tuple[str, str]] = field(default_factory=list)


ProgressFn = Callable[[int, int], None]


class Unusable(Exception):
    """A file that is quarantined without reading it; ``id_prefix`` names its path-based id."""

    def __init__(self, reason: str, id_prefix: str = "unreadable") -> None:
        super().__init__(reason)
        self.reason = reason
        self.id_prefix = id_prefix


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


def _not_regular(mode: int) -> str:
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"not a regular file: {kind}; it was not opened"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _os_reason(exc: OSError, path: str) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop: the link never reaches a file"
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            try:
                target = db_text(os.readlink(path))
            except OSError:
                target = "?"
            return f"dangling symlink: its target {target} does not exist"
        return "file disappeared before it was ingested"
    return f"file could not be read: {exc.strerror or exc}"


def open_regular(path: str, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> BinaryIO:
    """The file opened for reading, only if it is a regular file of at most ``max_file_bytes``;
    else ``Unusable`` with the reason. A FIFO or a device is never opened."""
    try:
        st = os.stat(path)  # follows symlinks: a loop or a dangling link raises here
    except OSError as exc:
        raise Unusable(_os_reason(exc, path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise Unusable(_not_regular(st.st_mode))
    if st.st_size > max_file_bytes:
        raise Unusable(
            f"too large: a {_size(st.st_size)} file exceeds the {_size(max_file_bytes)} file size limit; "
            "it was not read",
            id_prefix="too-large",
        )
    try:
        # O_NONBLOCK: if the path became a FIFO since the stat, opening it must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise Unusable(_os_reason(exc, path)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unusable(_not_regular(st.st_mode))
        if st.st_size > max_file_bytes:
            raise Unusable(
                f"too large: a {_size(st.st_size)} file exceeds the {_size(max_file_bytes)} file size limit",
                id_prefix="too-large",
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _path_id(prefix: str, entry: FileEntry) -> str:
    """An id for a file whose bytes were not read: from its path, size and mtime."""
    key = fs_bytes(entry.path) + f"\0{entry.size}\0{entry.mtime_ns}".encode()
    return f"{prefix}-{hashlib.sha256(key).hexdigest()[:16]}"


def _hash_file(entry: FileEntry, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> tuple[str, str | None]:
    """(poster id, None) for a readable regular file; (path-based id, reason) for anything else."""
    try:
        with open_regular(entry.path, max_file_bytes) as fh:
            # Streamed: never read whole into memory (and the size limit came first).
            return hashlib.file_digest(fh, "sha256").hexdigest(), None
    except Unusable as exc:
        return _path_id(exc.id_prefix, entry), exc.reason
    except OSError as exc:
        return _path_id("unreadable", entry), _os_reason(exc, entry.path)


def _blob_suffix(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    return suffix if _BLOB_SUFFIX.fullmatch(suffix) else ".img"


# The id, the decoded pixels and the stored copy must all be of the same bytes.
_CHANGED = (
    "the file changed while it was being ingested (its bytes no longer match its hash); ingest it again"
)


def _decode_and_store(
    entry: FileEntry,
    poster_id: str,
    blobs: BlobStore,
    max_pixels: int,
    min_side: int,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> dict[str, Any]:
    """Everything about one file that does not need the database."""
    try:
        with open_regular(entry.path, max_file_bytes) as fh:
            data = fh.read()
    except Unusable as exc:
        return {"status": "quarantined", "reason": exc.reason}
    except OSError as exc:
        return {"status": "quarantined", "reason": _os_reason(exc, entry.path)}
    if hashlib.sha256(data).hexdigest() != poster_id:
        return {"status": "quarantined", "reason": _CHANGED}
    try:
        decoded = decode_image(data, max_pixels=max_pixels, min_side=min_side)
        thumb = decoded.image.copy()
        thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    except DecodeError as exc:
        return {"status": "quarantined", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a decoder failing on one file must not stop the batch
        log.warning("decoding %s failed unexpectedly", db_text(entry.path), exc_info=True)
        return {"status": "quarantined", "reason": f"could not be decoded ({type(exc).__name__}: {exc})"}
    try:
        # The stored original is a copy (never a link) whose bytes must hash to the id.
        original = blobs.store_file(
            "originals", poster_id, _blob_suffix(entry.path), Path(entry.path), expected_sha256=poster_id
        )
    except ContentChangedError:
        return {"status": "quarantined", "reason": _CHANGED}
    except OSError as exc:
        return {"status": "quarantined", "reason": _os_reason(exc, entry.path)}
    return {
        "status": "ok",
        "reason": None,
        "width": decoded.width,
        "height": decoded.height,
        "format": decoded.format,
        "source_mode": decoded.source_mode,
        "frames": decoded.frames,
        "exif_rotated": decoded.exif_rotated,
        "original_path": original,
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
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> IngestSummary:
    summary = IngestSummary(batch=manifest.batch, files=len(manifest.files))
    sidecar = read_sidecar(Path(manifest.sidecar)) if manifest.sidecar else Sidecar()
    summary.sidecar_problems.extend((f"sidecar {where}", what) for where, what in sidecar.problems)
    summary.skipped = [(db_text(s.path), s.reason) for s in manifest.skipped]
    workers = workers or min(4, os.cpu_count() or 1)
    refresh_catalog(db, manifest.batch)  # rows a run before left in the lake

    # A retried or refreshed batch: the files it has a row for are not read again, whatever
    # became of them since (a source folder deleted after ingest would add a quarantined row).
    in_batch = _batch_uris(db, manifest.batch)
    todo = [e for e in manifest.files if db_text(e.path) not in in_batch]
    summary.already_ingested = len(manifest.files) - len(todo)
    with ThreadPoolExecutor(workers) as pool:
        hashes = list(pool.map(lambda e: _hash_file(e, max_file_bytes), todo))
    known = _existing(db, [db_text(e.path) for e in todo])
    ok_ids = _ok_ids(db, [pid for pid, problem in hashes if problem is None])

    rows: list[dict[str, Any]] = []
    first_copy: dict[str, FileEntry] = {}  # content id -> the one file of those bytes that is decoded
    now = dt.datetime.now(dt.UTC)
    for entry, (poster_id, problem) in zip(todo, hashes, strict=True):
        uri = db_text(entry.path)
        if (poster_id, uri) in known:
            summary.already_ingested += 1
            continue
        name = os.path.basename(entry.path)  # as the file system has it: the sidecar's key
        record = sidecar.get(name)
        row: dict[str, Any] = {
            "poster_id": poster_id,
            "source_uri": uri,
            "file_name": db_text(name),
            "file_bytes": entry.size,
            "batch": manifest.batch,
            "ingested_at": now,
            "sidecar": record.raw if record else None,
            "title": record.title if record else None,
            "genres": record.genres if record else None,
            "year": record.year if record else None,
            "sidecar_error": record.error if record else None,
        }
        if problem is not None:
            row.update(status="quarantined", reason=problem)
        elif poster_id in ok_ids:
            first = ok_ids[poster_id]
            row.update(status="duplicate", reason=f"same bytes as {Path(first).name}", duplicate_of=first)
        else:
            first_copy.setdefault(poster_id, entry)
        rows.append(row)

    decoded: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(workers) as pool:
        futures = [
            (pid, pool.submit(_decode_and_store, entry, pid, blobs, max_pixels, min_side, max_file_bytes))
            for pid, entry in first_copy.items()
        ]
        for done, (pid, fut) in enumerate(futures, 1):
            decoded[pid] = fut.result()
            if progress and (done % 50 == 0 or done == len(futures)):
                progress(done, len(futures))

    for row in rows:
        if "status" in row:
            continue
        result = decoded[row["poster_id"]]
        first = db_text(first_copy[row["poster_id"]].path)
        if result["status"] != "ok":
            # Not a poster: every copy of these bytes is quarantined for the same reason.
            row.update(status="quarantined", reason=result["reason"])
        elif row["source_uri"] == first:
            row.update(result)
        else:
            row.update(status="duplicate", reason=f"same bytes as {Path(first).name}", duplicate_of=first)

    summary.new_rows = _write_rows(db, manifest.batch, rows)
    for row in rows:
        summary.status_counts[row["status"]] += 1
        if row["status"] == "quarantined":
            summary.quarantined.append((row["file_name"], row["reason"]))
        elif row["status"] == "ok":
            summary.thumbnails.append((row["thumbnail_path"], row["file_name"]))
        if row["sidecar_error"]:
            summary.sidecar_problems.append((row["file_name"], row["sidecar_error"]))
    return summary


def _batch_uris(db: Database, batch: str) -> set[str]:
    return {r[0] for r in db.query("SELECT source_uri FROM raw_posters WHERE batch = ?", [batch])}


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


def _write_rows(db: Database, batch: str, rows: list[dict[str, Any]]) -> int:
    """The batch's new rows as one lake segment, applied to the catalog: a crash mid-write
    leaves none of them behind. Applying settles two batches racing on the same bytes (the one
    applied second records a duplicate), so the rows' statuses are read back."""
    if not rows:
        return 0
    cols = [c.strip() for c in _COLUMNS.split(",")]
    records = [
        {c: row.get(c) for c in cols}
        | {
            # The record was made JSON-safe when the sidecar was read (no NaN, no lone surrogates).
            "sidecar": json.dumps(row["sidecar"], ensure_ascii=False, allow_nan=False)
            if row.get("sidecar")
            else None,
            "decoder": DECODER_VERSION,
        }
        for row in rows
    ]
    before = len(_batch_uris(db, batch))
    db.lake.write_segment(batch, {"raw_posters": records})
    refresh_catalog(db, batch)
    settled = {
        uri: (status, reason, duplicate_of)
        for uri, status, reason, duplicate_of in db.query(
            "SELECT source_uri, status, reason, duplicate_of FROM raw_posters WHERE batch = ?", [batch]
        )
    }
    for row in rows:
        if row["source_uri"] in settled:
            row["status"], row["reason"], row["duplicate_of"] = settled[row["source_uri"]]
    return len(settled) - before
