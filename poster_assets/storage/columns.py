"""The columns of each table as DuckDB declares them, for catalogs and UIs.

Read from the schema's own DDL (``storage.schema``) applied to an in-memory database, so the
names, types and order are what a file made by that DDL holds (a migrated file included: its
added columns come from the same ALTER statements). Descriptions are the DDL's trailing
``-- comments``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from poster_assets.storage.schema import DB_FILE, SCHEMA_SQL

# DuckDB names a file's catalog after the file: `poster_assets.duckdb` -> `poster_assets`.
CATALOG = Path(DB_FILE).stem
_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")
_ADD = re.compile(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+) [^-]*--\s*(.+)$")
_COLUMN = re.compile(r"^\s+(\w+)\s+[A-Z][^-]*--\s*(.+)$")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as DuckDB spells it: VARCHAR, DOUBLE[8], TIMESTAMP WITH TIME ZONE, ...
    nullable: bool
    description: str | None = None


@dataclass(frozen=True)
class TableColumns:
    table: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def qualified_name(table: str) -> str:
    """``catalog.schema.table``, as DuckDB (and dbt-duckdb) name the table in the store's file."""
    return f"{CATALOG}.main.{table}"


def _comments(sql: str) -> dict[tuple[str, str], str]:
    """(table, column) -> the comment on the column's line of the DDL."""
    found: dict[tuple[str, str], str] = {}
    table = None
    for line in sql.splitlines():
        if m := _CREATE.search(line):
            table = m[1]
        elif m := _ADD.search(line):
            found[(m[1], m[2])] = m[3].strip()
        elif table and (m := _COLUMN.match(line)):
            found[(table, m[1])] = m[2].strip()
    return found


@functools.cache
def table_columns(table: str) -> TableColumns:
    """The columns of ``table`` in ``storage.schema``, in order; LookupError for another name."""
    with duckdb.connect(":memory:") as conn:
        conn.execute(SCHEMA_SQL)
        try:
            described = conn.execute(f'DESCRIBE "{table}"').fetchall()
        except duckdb.CatalogException:
            raise LookupError(f"no table {table!r} in the poster-assets schema") from None
        keys = conn.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [table],
        ).fetchall()
    comments = _comments(SCHEMA_SQL)
    return TableColumns(
        table,
        tuple(
            Column(name, type_, null == "YES", comments.get((table, name)))
            for name, type_, null, *_ in described
        ),
        tuple(keys[0][0]) if keys else (),
    )
