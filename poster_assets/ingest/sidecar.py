"""Optional per-file metadata (title, genres, year) from a CSV or JSON-lines sidecar.

A sidecar is written by hand or by another tool, so a bad line costs only that line: a line
that is not a JSON object (or not JSON), or names no file, is skipped and listed in
``Sidecar.problems``; a record with a bad value (``"year": 1e999``, ``"genres": 5``, text that
is not UTF-8) keeps its good fields, drops the bad ones and says why in ``SidecarRecord.error``.
Reading a sidecar never raises for what is inside it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poster_assets.ingest.names import db_text, is_db_safe

_FILE_KEYS = ("file", "filename", "file_name", "path", "image")
SIDECAR_SUFFIXES = (".jsonl", ".csv")
YEAR_RANGE = (1000, 9999)  # a four-digit year; anything else is a typo or a unit mix-up
_MAX_SHOWN = 60  # characters of a bad value quoted in a problem


class SidecarError(ValueError):
    pass


@dataclass(frozen=True)
class SidecarRecord:
    title: str | None
    genres: list[str] | None
    year: int | None
    raw: dict[str, Any]  # the record as written, made JSON- and UTF-8-safe (stored in raw_posters.sidecar)
    error: str | None = None  # the fields that were dropped and why


@dataclass
class Sidecar:
    path: str | None = None
    records: dict[str, SidecarRecord] = field(default_factory=dict)  # by file base name
    problems: list[tuple[str, str]] = field(default_factory=list)  # (where, what): lines that were skipped

    def get(self, name: str) -> SidecarRecord | None:
        return self.records.get(name)


def read_sidecar(path: Path) -> Sidecar:
    """Every usable record of a sidecar, keyed by file name (the base name, so a sidecar made
    elsewhere still matches), and the lines that could not be used."""
    path = Path(path)
    out = Sidecar(path=db_text(str(path)))
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
        out.problems.append((out.path, "a sidecar must be .csv or .jsonl: not read"))
        return out
    try:
        data = path.read_bytes()
    except OSError as exc:
        out.problems.append((out.path, f"could not be read: {exc.strerror or exc}"))
        return out
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Keep the undecodable bytes as surrogates: a record whose file name has them still matches
        # a file with that (non-UTF-8) name; values that have them are dropped below.
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape")
        line = data[: exc.start].count(b"\n") + 1
        out.problems.append(
            (out.path, f"not valid UTF-8 (first bad byte on line {line}): values with bad bytes are dropped")
        )
    records = _csv_records(text, out) if suffix == ".csv" else _jsonl_records(text, out)
    for where, rec in records:
        key = next((rec[k] for k in _FILE_KEYS if rec.get(k) not in (None, "")), None)
        if key is None:
            out.problems.append((where, f"names no file (expected one of {', '.join(_FILE_KEYS)}): skipped"))
            continue
        if not isinstance(key, str | int):
            out.problems.append((where, f"file is {_show(key)}, not a name: skipped"))
            continue
        name = Path(str(key)).name
        if name in out.records:
            out.problems.append((where, f"{db_text(name)} is listed again: this later record is used"))
        out.records[name] = parse_record(rec)
    return out


def load_sidecar(path: Path) -> dict[str, SidecarRecord]:
    """Records keyed by file name; see ``read_sidecar`` for the lines that were skipped."""
    return read_sidecar(path).records


def _csv_records(text: str, out: Sidecar) -> list[tuple[str, dict[str, Any]]]:
    records = []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for rec in reader:
            records.append((f"line {reader.line_num}", rec))
    except csv.Error as exc:
        out.problems.append((f"line {reader.line_num}", f"not valid CSV ({exc}): the rest is skipped"))
    return records


def _jsonl_records(text: str, out: Sidecar) -> list[tuple[str, dict[str, Any]]]:
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, an int of 5000 digits, deep nesting
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:_MAX_SHOWN]
            out.problems.append((where, f"not valid JSON ({msg}): skipped"))
            continue
        if not isinstance(rec, dict):
            out.problems.append((where, f"a JSON {_json_kind(rec)}, not an object: skipped"))
            continue
        records.append((where, rec))
    return records


def parse_record(record: dict[str, Any]) -> SidecarRecord:
    """Title, genres and year of one record; a bad value is dropped and named in ``error``."""
    problems: list[str] = []
    title = _title(record.get("title"), problems)
    genres = _genres(record.get("genres", record.get("genre")), problems)
    year = _year(record.get("year"), problems)
    return SidecarRecord(title, genres, year, _json_safe(record), "; ".join(problems) or None)


def sidecar_fields(record: dict[str, Any] | None) -> tuple[str | None, list[str] | None, int | None]:
    """(title, genres, year) from a record, tolerant of CSV strings like "horror|thriller"."""
    if not record:
        return None, None, None
    parsed = parse_record(record)
    return parsed.title, parsed.genres, parsed.year


def _title(value: Any, problems: list[str]) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.append(f"title {_show(value)} is not text")
        return None
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"title {_show(value)} is not text")
        return None
    text = str(value)
    if not is_db_safe(text):
        problems.append(f"title {_show(text)} is not valid UTF-8")
        return None
    return text


def _genres(value: Any, problems: list[str]) -> list[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        sep = "|" if "|" in value else ","
        items: list[Any] = [g.strip() for g in value.split(sep)]
    elif isinstance(value, list):
        items = value
    else:
        problems.append(f"genres {_show(value)} is not a list or text")
        return None
    if not all(isinstance(g, str) for g in items):
        problems.append(f"genres {_show(value)} has items that are not text")
        return None
    if not all(is_db_safe(g) for g in items):
        problems.append(f"genres {_show(value)} is not valid UTF-8")
        return None
    genres = [g.strip() for g in items if g.strip()]
    return genres or None


def _year(value: Any, problems: list[str]) -> int | None:
    if value is None or value == "":
        return None
    year: int | None = None
    if isinstance(value, bool):
        year = None
    elif isinstance(value, int):
        year = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        year = int(value)
    elif isinstance(value, str):
        try:
            year = int(value.strip())
        except ValueError:
            try:
                as_float = float(value)
                year = int(as_float) if math.isfinite(as_float) and as_float.is_integer() else None
            except ValueError:
                year = None
    if year is None:
        problems.append(f"year {_show(value)} is not a whole number")
        return None
    if not YEAR_RANGE[0] <= year <= YEAR_RANGE[1]:
        problems.append(f"year {_show(value)} is outside {YEAR_RANGE[0]}–{YEAR_RANGE[1]}")
        return None
    return year


def _json_safe(value: Any) -> Any:
    """What ``json.dumps(allow_nan=False)`` and DuckDB's JSON type accept: non-finite numbers
    and undecodable text become (escaped) strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return db_text(value)
    if isinstance(value, dict):
        return {("" if k is None else db_text(str(k))): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _show(value: Any) -> str:
    # A string with undecodable bytes shows them as \xNN (repr would show lone surrogates).
    text = f"'{db_text(value)}'" if isinstance(value, str) and not is_db_safe(value) else db_text(repr(value))
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def find_sidecar(folder: Path) -> Path | None:
    """A folder's own sidecar: ``sidecar.jsonl`` / ``sidecar.csv`` / ``metadata.*`` if present."""
    for stem in ("sidecar", "metadata"):
        for suffix in SIDECAR_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.exists():
                return candidate
    return None
