"""Ingest batches: the dynamic partitions of every per-poster asset.

A batch is a manifest of files (path, size, mtime) written once, atomically, as JSON under
``<home>/batches``. The sensor and the CLI both make batches; the ``raw_posters`` asset
reads its partition's manifest, so re-running a partition re-reads exactly the same files.
Manifests are files rather than rows so the sensor never waits on DuckDB's write lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from poster_assets.ingest.sidecar import SIDECAR_SUFFIXES, find_sidecar
from poster_assets.storage.files import atomic_write_text

# Files that describe posters rather than being posters.
_NOT_POSTERS = {".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".txt", ".md", ".xml", ".yaml", ".yml"}


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime_ns: int

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.path, self.size, self.mtime_ns)


@dataclass
class BatchManifest:
    batch: str
    source_dir: str
    files: list[FileEntry]
    sidecar: str | None = None
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    def save(self, batches_dir: Path) -> Path:
        return atomic_write_text(
            batches_dir / f"{self.batch}.json", json.dumps(asdict(self), indent=1, ensure_ascii=False)
        )

    @classmethod
    def load(cls, batches_dir: Path, batch: str) -> BatchManifest:
        path = batches_dir / f"{batch}.json"
        if not path.exists():
            raise FileNotFoundError(f"batch {batch!r} has no manifest at {path}")
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["files"] = [FileEntry(**f) for f in raw["files"]]
        return cls(**raw)


def scan_folder(folder: Path, recursive: bool = False, sidecar: Path | None = None) -> list[FileEntry]:
    """Candidate poster files, sorted by path. Hidden files and metadata files are skipped."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    entries = []
    skip = {Path(sidecar).resolve()} if sidecar else set()
    for p in pattern:
        if p.name.startswith(".") or not p.is_file() or p.resolve() in skip:
            continue
        if p.suffix.lower() in _NOT_POSTERS or p.suffix.lower() in SIDECAR_SUFFIXES:
            continue
        if any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        st = p.stat()
        entries.append(FileEntry(str(p), st.st_size, st.st_mtime_ns))
    return sorted(entries, key=lambda e: e.path)


def known_files(batches_dir: Path) -> set[tuple[str, int, int]]:
    """Every (path, size, mtime) already placed in some batch."""
    seen: set[tuple[str, int, int]] = set()
    if not batches_dir.exists():
        return seen
    for manifest in batches_dir.glob("*.json"):
        for f in json.loads(manifest.read_text(encoding="utf-8"))["files"]:
            seen.add((f["path"], f["size"], f["mtime_ns"]))
    return seen


def new_batch(
    folder: Path, entries: list[FileEntry], sidecar: Path | None, prefix: str = "batch"
) -> BatchManifest:
    """A manifest with an id that sorts by time and says what it holds."""
    digest = hashlib.sha256("\n".join(f"{e.path}\0{e.size}\0{e.mtime_ns}" for e in entries).encode())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    batch = f"{prefix}-{stamp}-{digest.hexdigest()[:8]}"
    return BatchManifest(batch, str(Path(folder).resolve()), entries, str(sidecar) if sidecar else None)


def plan_batch(
    batches_dir: Path,
    folder: Path,
    sidecar: Path | None = None,
    recursive: bool = False,
    prefix: str = "cli",
    settled_before_ns: int | None = None,
) -> tuple[BatchManifest | None, int]:
    """A manifest of the folder's files that no earlier batch holds (None if there are none),
    and how many new files were left out because they changed after ``settled_before_ns``
    (a file still being copied). The manifest is not saved; the caller registers it."""
    folder = Path(folder).resolve()
    sidecar = Path(sidecar).resolve() if sidecar else find_sidecar(folder)
    seen = known_files(batches_dir)
    fresh = [e for e in scan_folder(folder, recursive=recursive, sidecar=sidecar) if e.key not in seen]
    settled = fresh if settled_before_ns is None else [e for e in fresh if e.mtime_ns <= settled_before_ns]
    manifest = new_batch(folder, settled, sidecar, prefix=prefix) if settled else None
    return manifest, len(fresh) - len(settled)
