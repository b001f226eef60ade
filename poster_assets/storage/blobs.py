"""Files beside the database: originals, thumbnails, depth maps, masks, layer labels.

Paths are content- or id-addressed and fanned out by the first two hex digits so no folder
grows past a few thousand entries. Every write lands under a temporary name and is renamed into
place (``files.atomic_write``, ``store_file``), so a crash never leaves a half-written file under
a real name.

Stored bytes belong to the store: an original is a copy of the user's file, never a hard link,
so editing or overwriting that file later cannot change the bytes its poster id (their sha256)
names. The copy is a reflink where the filesystem can (btrfs, XFS, …: instant, no extra space
until one side changes), else an in-kernel ``copy_file_range``, else a streamed copy.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image

from poster_assets.storage.files import atomic_write, file_sha256

_CHUNK = 1 << 20
# ioctl(dest, FICLONE, src) from linux/fs.h: share src's extents copy-on-write (a reflink).
_FICLONE = getattr(fcntl, "FICLONE", 0x40049409)
# The copy may not be done this way here (filesystem, kernel, two filesystems): try the next.
_UNSUPPORTED = {
    errno.EOPNOTSUPP,
    errno.ENOTTY,
    errno.EXDEV,
    errno.EINVAL,
    errno.ENOSYS,
    errno.EBADF,
    errno.EPERM,
}


class ContentChangedError(OSError):
    """A file's bytes were not the ones its id names: it changed after it was hashed."""


def _reflink(src: int, dst: int) -> bool:
    try:
        fcntl.ioctl(dst, _FICLONE, src)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return False
        raise
    return True


def _copy_in_kernel(src: int, dst: int) -> bool:
    """``copy_file_range`` to the end of ``src`` (may itself share extents, e.g. on NFS or btrfs)."""
    if not hasattr(os, "copy_file_range"):  # not Linux
        return False
    copied = 0
    try:
        while n := os.copy_file_range(src, dst, 1 << 30):
            copied += n
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
        if copied:  # refused part way: start the streamed copy from the beginning
            os.ftruncate(dst, 0)
            os.lseek(src, 0, os.SEEK_SET)
            os.lseek(dst, 0, os.SEEK_SET)
        return False
    return True


def _sha256_of(fd: int) -> str:
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, _CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def copy_hashed(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` (a new file) and return the sha256 of the bytes ``target``
    now holds: the copy's own bytes, so the hash is true of what was stored even when
    ``source`` changes during the copy."""
    with open(source, "rb") as src, open(target, "w+b") as dst:
        if _reflink(src.fileno(), dst.fileno()) or _copy_in_kernel(src.fileno(), dst.fileno()):
            # Read back our private copy (a reflink's blocks are shared until either side writes).
            return _sha256_of(dst.fileno())
        digest = hashlib.sha256()  # streamed: hashed while copying, one read of the source
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
        return digest.hexdigest()


class BlobStore:
    def __init__(self, home: Path) -> None:
        self.home = Path(home)

    def relpath(self, kind: str, key: str, suffix: str) -> str:
        return f"blobs/{kind}/{key[:2]}/{key}{suffix}"

    def abspath(self, relpath: str) -> Path:
        return self.home / relpath

    def write_bytes(self, kind: str, key: str, suffix: str, data: bytes) -> str:
        rel = self.relpath(kind, key, suffix)
        atomic_write(self.abspath(rel), data)
        return rel

    def write_image(self, kind: str, key: str, image: Image.Image, fmt: str = "PNG", **save_kw) -> str:
        suffix = {"PNG": ".png", "JPEG": ".jpg"}[fmt]
        buf = io.BytesIO()
        image.save(buf, format=fmt, **save_kw)
        return self.write_bytes(kind, key, suffix, buf.getvalue())

    def store_file(
        self, kind: str, key: str, suffix: str, source: Path, expected_sha256: str | None = None
    ) -> str:
        """Keep a copy of an ingested file (never a hard link: the user's file is not ours).

        With ``expected_sha256`` (the poster id), the bytes actually copied are hashed and must
        match it, else ``ContentChangedError`` and nothing is stored: the file changed between
        hashing and copying. An existing copy is then checked too, and replaced when it no longer
        matches (an original stored as a hard link by an older version, whose source was since
        overwritten). Without it, an existing copy is kept as it is.
        """
        rel = self.relpath(kind, key, suffix)
        target = self.abspath(rel)
        if target.exists() and (
            expected_sha256 is None or file_sha256(target, use_cache=False) == expected_sha256
        ):
            return rel
        self.copy_in(source, target, expected_sha256)
        return rel

    def copy_in(self, source: Path, target: Path, expected_sha256: str | None = None) -> str:
        """Copy ``source`` to ``target`` through a temporary file renamed into place; return the
        sha256 of the stored bytes (checked against ``expected_sha256`` when given)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{target.name}.")
        os.close(fd)
        try:
            digest = copy_hashed(source, Path(tmp))
            if expected_sha256 is not None and digest != expected_sha256:
                raise ContentChangedError(
                    errno.EIO,
                    f"{source} changed after it was hashed: its bytes now hash to {digest[:12]}, "
                    f"not {expected_sha256[:12]}; ingest it again",
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return digest
