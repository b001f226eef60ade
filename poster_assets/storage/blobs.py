"""Files beside the database: originals, thumbnails, depth maps, masks, layer labels.

Paths are content- or id-addressed and fanned out by the first two hex digits so no folder
grows past a few thousand entries. Every write goes through ``files.atomic_write``, so a crash
never leaves a half-written file under a real name.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

from PIL import Image

from poster_assets.storage.files import atomic_write


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

    def store_file(self, kind: str, key: str, suffix: str, source: Path) -> str:
        """Keep a copy of an ingested file; a hard link when on the same filesystem."""
        rel = self.relpath(kind, key, suffix)
        target = self.abspath(rel)
        if target.exists():
            return rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
        try:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return rel
