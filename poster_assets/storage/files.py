"""Writing files so that a reader or a crash never sees half of one, and hashing them.

Every file poster-assets writes goes through ``atomic_write`` (one file) or ``atomic_dir`` (a
folder of files that belong together, such as an OpenVINO IR pair): the bytes land under a
temporary name in the target's own folder and are renamed into place in one step. A killed
writer leaves its ``.tmp-*`` behind; ``sweep_temporaries`` removes the ones nobody touched for
an hour (the CLI does before each run).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def file_sha256(path: Path, use_cache: bool = True) -> str:
    """sha256 of a file, read in chunks (a model or a 200 GB stray file never sits in memory).

    Cached per process by (path, size, mtime): a 60 MB model takes a few hundred ms to hash and
    is checked each time a runner is built; ``use_cache=False`` re-reads the bytes.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if use_cache:
        with _hash_lock:
            if key in _hash_cache:
                return _hash_cache[key]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    result = digest.hexdigest()
    with _hash_lock:
        _hash_cache[key] = result
    return result


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], None], fsync: bool = False) -> Path:
    """Write ``data`` (bytes, or a function that writes into the open file) to ``path`` under a
    temporary name in the same folder, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str, fsync: bool = False) -> Path:
    return atomic_write(path, text.encode("utf-8"), fsync=fsync)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` to fill; on success it is renamed to ``target``.

    When another process renamed its own copy into place first (same content: folders here are
    named by a content hash), ours is dropped. A crash leaves only a ``.tmp-*`` folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.exists():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


TEMP_PREFIX = ".tmp-"
# Folders of a home folder where writers leave their temporaries (``atomic_write``,
# ``atomic_dir``, ``BlobStore.store_file``), searched to any depth (``models`` holds ``models/ssl``).
TEMP_ROOTS = ("blobs", "indexes", "batches", "models", "lake")
STALE_TEMP_AGE_S = 3600.0


@dataclass
class SweepReport:
    removed: list[Path] = field(default_factory=list)
    bytes: int = 0
    kept_fresh: int = 0  # temporaries young enough to belong to a writer running now


def _newest_mtime_and_size(path: Path) -> tuple[float, int]:
    """The newest mtime of ``path`` and of everything under it (a writer still filling a folder
    keeps some file in it fresh), and the bytes removing it frees (a file with other hard links
    frees none). Links are not followed."""
    st = path.lstat()
    newest, size = st.st_mtime, _freed(st)
    if stat.S_ISDIR(st.st_mode):
        for root, dirs, files in os.walk(path, followlinks=False):
            for name in dirs + files:
                try:
                    sub = (Path(root) / name).lstat()
                except OSError:
                    continue
                newest = max(newest, sub.st_mtime)
                size += _freed(sub)
    return newest, size


def _freed(st: os.stat_result) -> int:
    return st.st_size if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 else 0


def sweep_temporaries(
    home: Path,
    older_than_s: float = STALE_TEMP_AGE_S,
    roots: tuple[str, ...] = TEMP_ROOTS,
    now: float | None = None,
) -> SweepReport:
    """Remove the ``.tmp-*`` files and folders that a killed writer left under ``home``'s
    ``roots``, when nothing in them changed for ``older_than_s`` seconds. A younger one may
    belong to a writer running right now and is kept. Never descends into a temporary folder
    (it goes whole or stays whole) nor follows links."""
    now = time.time() if now is None else now
    report = SweepReport()
    for name in roots:
        top = Path(home) / name
        if not top.is_dir():
            continue
        for root, dirs, files in os.walk(top, followlinks=False):
            temps = [d for d in dirs if d.startswith(TEMP_PREFIX)]
            dirs[:] = [d for d in dirs if not d.startswith(TEMP_PREFIX)]
            for entry in temps + [f for f in files if f.startswith(TEMP_PREFIX)]:
                path = Path(root) / entry
                try:
                    newest, size = _newest_mtime_and_size(path)
                except OSError:
                    continue  # gone already: its writer finished or failed
                if now - newest < older_than_s:
                    report.kept_fresh += 1
                    continue
                try:
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    log.warning("could not remove the leftover %s: %s", path, exc)
                    continue
                report.removed.append(path)
                report.bytes += size
    return report
