"""Writing files so that a reader or a crash never sees half of one, and hashing them.

Every file poster-assets writes goes through ``atomic_write`` (one file) or ``atomic_dir`` (a
folder of files that belong together, such as an OpenVINO IR pair): the bytes land under a
temporary name in the target's own folder and are renamed into place in one step.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

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
