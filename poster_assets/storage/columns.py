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


def table_columns(table: str) -> TableColumns:
    """The columns of ``table`` in ``storage.schema``, in order; LookupError for another name."""
    try:
        return _schema_tables()[table]
    except KeyError:
        raise LookupError(f"no table {table!r} in the poster-assets schema") from None


@functools.cache
def _schema_tables() -> dict[str, TableColumns]:
    """Every table of the schema, described by DuckDB from the DDL (one in-memory database: each
    costs ~20 ms to open)."""
    with duckdb.connect(":memory:") as conn:
        conn.execute(SCHEMA_SQL)
        described = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = 'main' "
            "ORDER BY table_name, column_index"
        ).fetchall()
        keys = dict(
            conn.execute(
                "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
                "WHERE constraint_type = 'PRIMARY KEY'"
            ).fetchall()
        )
    comments = _comments(SCHEMA_SQL)
    columns: dict[str, list[Column]] = {}
    for table, name, type_, nullable in described:
        columns.setdefault(table, []).append(Column(name, type_, nullable, comments.get((table, name))))
    return {t: TableColumns(t, tuple(cols), tuple(keys.get(t, ()))) for t, cols in columns.items()}
