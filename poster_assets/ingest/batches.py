"""Ingest batches: the dynamic partitions of every per-poster asset.

A batch is a manifest of files (path, size, mtime) written once, atomically, as JSON under
``<home>/batches``. The sensor and the CLI both make batches; the ``raw_posters`` asset
reads its partition's manifest, so re-running a partition re-reads exactly the same files.
Manifests are files rather than rows so the sensor never waits on DuckDB's write lock.

Planning never fails on what is in the folder: every entry that is not a folder (a FIFO, a
socket, a dangling symlink or a symlink loop included) goes into the manifest, and ingest gives
it a row (quarantined with the reason when it is not a regular file); a subfolder that cannot be
read, or a symlink to a folder, is listed in the manifest's ``skipped``. A path that is not valid
UTF-8 is kept as Python's ``os.fsdecode`` gives it (lone surrogates, so the file still opens),
and the manifest JSON escapes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import stat
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from poster_assets.ingest.names import db_text
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


@dataclass(frozen=True)
class SkippedPath:
    """Something in the folder that is not ingested and has no row: an unreadable subfolder,
    a symlink to a folder. (Files that cannot be ingested get a quarantined row instead.)"""

    path: str
    reason: str


@dataclass
class BatchManifest:
    batch: str
    source_dir: str
    files: list[FileEntry]
    sidecar: str | None = None
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    skipped: list[SkippedPath] = field(default_factory=list)

    def save(self, batches_dir: Path) -> Path:
        raw = asdict(self)
        text = json.dumps(raw, indent=1, ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A path that is not valid UTF-8 holds lone surrogates: JSON escapes them (\udcXX),
            # and json.loads gives back the same string, which opens the same file.
            text = json.dumps(raw, indent=1, ensure_ascii=True)
        return atomic_write_text(batches_dir / f"{self.batch}.json", text)

    @classmethod
    def load(cls, batches_dir: Path, batch: str) -> BatchManifest:
        path = batches_dir / f"{batch}.json"
        if not path.exists():
            raise FileNotFoundError(f"batch {batch!r} has no manifest at {path}")
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["files"] = [FileEntry(**f) for f in raw["files"]]
        raw["skipped"] = [SkippedPath(**s) for s in raw.get("skipped", [])]
        return cls(**raw)


@dataclass
class FolderScan:
    files: list[FileEntry]
    skipped: list[SkippedPath]


def scan_folder(folder: Path, recursive: bool = False, sidecar: Path | None = None) -> list[FileEntry]:
    """Candidate poster files, sorted by path. Hidden files and metadata files are skipped."""
    return scan(folder, recursive=recursive, sidecar=sidecar).files


def scan(folder: Path, recursive: bool = False, sidecar: Path | None = None) -> FolderScan:
    """Every entry of ``folder`` that could be a poster (sorted by path), and what was skipped.

    Nothing here opens a file: entries are classified with ``lstat`` / ``stat`` only, so a FIFO
    never blocks the scan. Anything that is not a folder is a candidate — a FIFO, a socket, a
    dangling symlink or a symlink loop too — so that ingest gives it a row with the reason.
    Subfolders are descended (when ``recursive``) without following symlinks, so a symlink loop
    of folders cannot recurse; a subfolder that cannot be listed is skipped and listed.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    skip = {os.path.realpath(sidecar)} if sidecar else set()
    files: list[FileEntry] = []
    skipped: list[SkippedPath] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if current == folder:
                raise
            skipped.append(SkippedPath(str(current), f"folder could not be read: {exc.strerror or exc}"))
            continue
        for child in children:
            if child.name.startswith("."):
                continue
            path = Path(child.path)
            try:
                st = os.lstat(path)
            except OSError:
                continue  # gone since the listing: nothing left to account for
            if stat.S_ISDIR(st.st_mode):
                if recursive:
                    pending.append(path)
                continue
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = os.stat(path)
                except OSError:
                    target = None  # a loop or a dangling link: ingest quarantines it with the reason
                if target is not None and stat.S_ISDIR(target.st_mode):
                    if recursive:
                        skipped.append(SkippedPath(str(path), "symlink to a folder: not followed"))
                    continue
                if target is not None and stat.S_ISREG(target.st_mode):
                    st = target
            if path.suffix.lower() in _NOT_POSTERS or path.suffix.lower() in SIDECAR_SUFFIXES:
                continue
            if skip and os.path.realpath(path) in skip:
                continue
            files.append(FileEntry(str(path), st.st_size, st.st_mtime_ns))
    return FolderScan(sorted(files, key=lambda e: e.path), sorted(skipped, key=lambda s: s.path))


def known_files(batches_dir: Path) -> set[tuple[str, int, int]]:
    """Every (path, size, mtime) already placed in some batch."""
    seen: set[tuple[str, int, int]] = set()
    if not batches_dir.exists():
        return seen
    for manifest in batches_dir.glob("*.json"):
        for f in json.loads(manifest.read_text(encoding="utf-8"))["files"]:
            seen.add((f["path"], f["size"], f["mtime_ns"]))
    return seen


def folder_slug(folder: Path, limit: int = 24) -> str:
    """The folder's name in the letters a partition key and a shell take as they are."""
    ascii_name = unicodedata.normalize("NFKD", db_text(folder.resolve().name)).encode("ascii", "ignore")
    words = re.findall(r"[a-z0-9]+", ascii_name.decode().lower())
    return "_".join(words)[:limit].strip("_") or "folder"


def new_batch(
    folder: Path, entries: list[FileEntry], sidecar: Path | None, prefix: str = "batch"
) -> BatchManifest:
    """A manifest with an id a person can read in the UI's partition list (where from, which
    folder, how many files, when: ``cli-my_posters-200f-20261128T211710-144acae0``) and that
    no other batch has (the hash of its file list)."""
    text = "\n".join(f"{e.path}\0{e.size}\0{e.mtime_ns}" for e in entries)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass"))  # a non-UTF-8 name is still hashed
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    batch = f"{prefix}-{folder_slug(Path(folder))}-{len(entries)}f-{stamp}-{digest.hexdigest()[:8]}"
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
    found = scan(folder, recursive=recursive, sidecar=sidecar)
    fresh = [e for e in found.files if e.key not in seen]
    settled = fresh if settled_before_ns is None else [e for e in fresh if e.mtime_ns <= settled_before_ns]
    manifest = new_batch(folder, settled, sidecar, prefix=prefix) if settled else None
    if manifest is not None:
        manifest.skipped = found.skipped
    return manifest, len(fresh) - len(settled)
