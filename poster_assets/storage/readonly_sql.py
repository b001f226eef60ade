"""Read-only SQL for people: one SELECT, no writes, no files touched outside the database."""

from __future__ import annotations

from typing import Any

import duckdb

from poster_assets.storage.database import Database

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class ReadOnlySqlError(ValueError):
    pass


def check_readonly(sql: str) -> None:
    """Refuse anything but a single SELECT (or EXPLAIN of one)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlySqlError(f"could not parse the query: {exc}") from None
    if len(statements) != 1:
        raise ReadOnlySqlError(
            f"exactly one statement is allowed, got {len(statements)}; run them one at a time"
        )
    kind = statements[0].type
    if kind not in _ALLOWED:
        raise ReadOnlySqlError(
            f"only SELECT queries are allowed here, not {kind.name}; poster-assets sql is read-only"
        )


def run_readonly(db: Database, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    check_readonly(sql)
    with db.connect(read_only=True) as conn:
        # A SELECT can still reach files (COPY-free tricks like read_csv or ATTACH inside a
        # table function); the database is all a read-only user needs.
        conn.execute("SET enable_external_access = false")
        conn.execute("SET lock_configuration = true")
        try:
            cur = conn.execute(sql)
        except duckdb.Error as exc:
            raise ReadOnlySqlError(str(exc).split("\n")[0]) from None
        columns = [d[0] for d in cur.description or []]
        return columns, cur.fetchall()
