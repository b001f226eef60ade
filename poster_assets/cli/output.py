"""How every command prints rows: an aligned text table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from typing import Any

import click


def emit(columns: list[str], rows: list[tuple[Any, ...]], fmt: str) -> None:
    """Print ``rows`` as ``fmt``: ``table``, ``csv`` or ``json`` (a list of objects)."""
    if fmt == "json":
        click.echo(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=_json_default, indent=1)
        )
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        click.echo(format_table(columns, rows))


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def format_table(columns: list[str], rows: list[tuple[Any, ...]], max_width: int = 48) -> str:
    """Columns padded to their widest cell (cut at ``max_width``), a rule, and a row count."""

    def cell(v: Any) -> str:
        text = "NULL" if v is None else str(v)
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)
