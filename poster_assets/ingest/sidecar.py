"""Optional per-file metadata (title, genres, year) from a CSV or JSON-lines sidecar."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

_FILE_KEYS = ("file", "filename", "file_name", "path", "image")
SIDECAR_SUFFIXES = (".jsonl", ".csv")


class SidecarError(ValueError):
    pass


def load_sidecar(path: Path) -> dict[str, dict[str, Any]]:
    """Records keyed by file name (the base name, so a sidecar made elsewhere still matches)."""
    path = Path(path)
    if not path.exists():
        raise SidecarError(f"sidecar {path} does not exist")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            records = list(csv.DictReader(fh))
    elif path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        records = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SidecarError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    else:
        raise SidecarError(f"sidecar {path} must be .csv or .jsonl")
    out: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(records, 1):
        key = next((rec[k] for k in _FILE_KEYS if rec.get(k)), None)
        if key is None:
            raise SidecarError(f"{path}: record {i} names no file (expected one of {', '.join(_FILE_KEYS)})")
        out[Path(str(key)).name] = rec
    return out


def sidecar_fields(record: dict[str, Any] | None) -> tuple[str | None, list[str] | None, int | None]:
    """(title, genres, year) from a record, tolerant of CSV strings like "horror|thriller"."""
    if not record:
        return None, None, None
    title = record.get("title") or None
    genres = record.get("genres", record.get("genre"))
    if isinstance(genres, str):
        sep = "|" if "|" in genres else ","
        genres = [g.strip() for g in genres.split(sep) if g.strip()]
    year = record.get("year")
    try:
        year = int(year) if year not in (None, "") else None
    except (TypeError, ValueError):
        year = None
    return title, list(genres) if genres else None, year


def find_sidecar(folder: Path) -> Path | None:
    """A folder's own sidecar: ``sidecar.jsonl`` / ``sidecar.csv`` / ``metadata.*`` if present."""
    for stem in ("sidecar", "metadata"):
        for suffix in SIDECAR_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.exists():
                return candidate
    return None
