"""Read-only SQL for people: one query, no writes, no files outside the database, no view of the
engine's settings, and bounded in time and memory.

DuckDB lets a writer open the file only while no other process holds it, and a reader holds it
for as long as its query runs. Writers wait ``DEFAULT_LOCK_TIMEOUT_S`` (60 s) for the file, so a
query here is interrupted after ``sql_timeout_s()`` (30 s unless raised, never past
``MAX_TIMEOUT_S``, 50 s) and its memory is capped (``SET memory_limit``): a reader can keep
writers waiting, never make them fail.

The guard is strict on what a query may be: one statement, a read (``SELECT`` and its sugar:
``FROM …``, ``PIVOT``, ``UNPIVOT``, ``DESCRIBE``, ``SHOW TABLES``, ``SUMMARIZE``, or ``EXPLAIN`` of
one), with nothing that writes, attaches, copies, installs, loads, sets or runs pragmas; on a
read-only connection with external access off. The functions and views that show the engine's
settings or environment (memory limit, spill and database paths, secrets, logs) are refused, and
so are the ones that run SQL from a string, which no guard could check.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from dataclasses import dataclass
from typing import Any

import duckdb

from poster_assets.storage.database import MEMORY_SIZE, Database
from poster_assets.storage.store import DEFAULT_LOCK_TIMEOUT_S

TIMEOUT_ENV = "POSTER_ASSETS_SQL_TIMEOUT_S"
MEMORY_ENV = "POSTER_ASSETS_SQL_MEMORY_LIMIT"
DEFAULT_TIMEOUT_S = 30.0
# A reader must give the file back before a waiting writer gives up; 10 s for the rest (opening,
# interrupting, fetching, closing).
MAX_TIMEOUT_S = DEFAULT_LOCK_TIMEOUT_S - 10.0
DEFAULT_MEMORY_LIMIT = "2GB"

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
# What a read may start with when DuckDB turned it into several statements (a PIVOT whose
# columns come from the data becomes "CREATE TYPE … AS ENUM (SELECT …)" plus the query).
_READ_STARTS = {"select", "from", "with", "values", "table", "(", "pivot", "pivot_wider", "unpivot",
                "pivot_longer", "explain", "describe", "summarize"}  # fmt: skip
_PIVOTS = {"pivot", "pivot_wider"}
_WRITE_WORDS = {"insert", "update", "delete", "merge", "create", "alter", "drop", "truncate", "copy",
                "attach", "detach", "install", "load", "force", "set", "reset", "pragma", "call",
                "export", "import", "vacuum", "checkpoint", "use", "prepare", "execute", "deallocate",
                "begin", "commit", "rollback", "abort"}  # fmt: skip
# Table functions, views and scalars that show settings (memory limit, spill path), paths,
# secrets, the environment or logs, or that change them.
_HIDDEN = {
    "duckdb_settings", "current_setting", "pg_settings", "duckdb_profiling_settings",
    "duckdb_databases", "pragma_database_list", "pragma_database_size", "pragma_platform",
    "pragma_user_agent", "duckdb_temporary_files", "duckdb_memory", "duckdb_external_file_cache",
    "duckdb_extensions", "duckdb_extension_repositories", "duckdb_secrets", "duckdb_secret_types",
    "duckdb_secret_type_parameters", "which_secret", "duckdb_variables", "getvariable", "getenv",
    "duckdb_logs", "duckdb_logs_parsed", "duckdb_log_contexts", "truncate_duckdb_logs",
    "enable_logging", "disable_logging", "write_log", "duckdb_live_query_metrics",
    "duckdb_grammar_extensions", "add_grammar_extension", "remove_grammar_extension",
}  # fmt: skip
# Functions that run SQL held in a string: refused when called.
_DYNAMIC_SQL = {"query", "query_table", "json_execute_serialized_sql"}


class ReadOnlySqlError(ValueError):
    pass


class QueryTimeoutError(ReadOnlySqlError):
    """The query ran past its time and was interrupted."""


def sql_timeout_s(value: float | None = None) -> float:
    """``value``, else ``$POSTER_ASSETS_SQL_TIMEOUT_S``, else 30 s; refused above ``MAX_TIMEOUT_S``."""
    if value is None:
        raw = os.environ.get(TIMEOUT_ENV, "").strip()
        try:
            value = float(raw) if raw else DEFAULT_TIMEOUT_S
        except ValueError:
            raise ReadOnlySqlError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not 0 < value <= MAX_TIMEOUT_S:
        raise ReadOnlySqlError(
            f"the timeout must be above 0 and at most {MAX_TIMEOUT_S:g} s, not {value:g}: a query holds "
            f"the database file while it runs, and writers wait {DEFAULT_LOCK_TIMEOUT_S:g} s for it. "
            "For longer analyses, query a copy of the database file with duckdb."
        )
    return value


def sql_memory_limit(value: str | None = None) -> str:
    """``value``, else ``$POSTER_ASSETS_SQL_MEMORY_LIMIT``, else 2GB; a size such as ``512MB``."""
    value = (value or os.environ.get(MEMORY_ENV, "") or DEFAULT_MEMORY_LIMIT).strip()
    if not MEMORY_SIZE.fullmatch(value):
        raise ReadOnlySqlError(f"{value!r} is not a memory size such as 512MB or 4GB ({MEMORY_ENV})")
    return value


@dataclass(frozen=True)
class _Token:
    start: int
    word: str  # lower-cased; identifiers unquoted; "" for strings, numbers and comments
    is_name: bool  # an identifier or a keyword


def _tokens(sql: str) -> list[_Token]:
    found = duckdb.tokenize(sql)
    out = []
    for i, (start, kind) in enumerate(found):
        end = found[i + 1][0] if i + 1 < len(found) else len(sql)
        text = sql[start:end].strip()
        is_name = kind in (duckdb.token_type.identifier, duckdb.token_type.keyword)
        if kind == duckdb.token_type.identifier and text.startswith('"'):
            text = text[1:-1].replace('""', '"')
        elif kind not in (
            duckdb.token_type.identifier,
            duckdb.token_type.keyword,
            duckdb.token_type.operator,
        ):
            text = ""
        out.append(_Token(start, text.lower(), is_name))
    return out


@functools.cache
def _setting_names() -> frozenset[str]:
    with duckdb.connect() as conn:
        return frozenset(r[0].lower() for r in conn.execute("SELECT name FROM duckdb_settings()").fetchall())


def _refuse_hidden(tokens: list[_Token]) -> None:
    for token, after in zip(tokens, [*tokens[1:], None], strict=True):
        if not token.is_name:
            continue
        if token.word in _HIDDEN:
            raise ReadOnlySqlError(
                f"{token.word} is not available here: poster-assets sql does not show the database "
                "engine's settings, paths or environment"
            )
        if token.word in _DYNAMIC_SQL and after is not None and after.word == "(":
            raise ReadOnlySqlError(
                f"{token.word}() runs SQL held in a string, which poster-assets sql cannot check; "
                "write that query directly"
            )
    words = [t.word for t in tokens]
    # SHOW <name> shows a table, or a setting when a setting has that name.
    shows_tables = words[1:] in (["tables"], ["all", "tables"]) or (
        len(words) == 2 and words[1] != "all" and words[1] not in _setting_names()
    )
    if words[:1] == ["show"] and not shows_tables:
        raise ReadOnlySqlError(
            "SHOW is allowed here only for tables (SHOW TABLES, SHOW <table>), not for settings"
        )


def _refuse_not_a_read(tokens: list[_Token], what: str) -> None:
    """A statement DuckDB expands (a PIVOT over values read from the data) must still be a read."""
    words = [t.word for t in tokens]
    if not _PIVOTS & set(words):
        raise ReadOnlySqlError(f"only SELECT queries are allowed here, not {what}")
    writes = [t.word for t in tokens if t.is_name and t.word in _WRITE_WORDS]
    if words[0] not in _READ_STARTS or writes:
        word = (writes or words[:1])[0].upper()
        raise ReadOnlySqlError(
            f"only SELECT queries are allowed here, not {word}; poster-assets sql is read-only"
        )


def _explained(sql: str, tokens: list[_Token]) -> str:
    """The statement after ``EXPLAIN [ANALYZE] [(options)]``."""
    i = 1
    while i < len(tokens) and tokens[i].word in ("analyze", "analyse", "("):
        if tokens[i].word == "(":
            depth = 0
            for j in range(i, len(tokens)):
                depth += {"(": 1, ")": -1}.get(tokens[j].word, 0)
                if depth == 0:
                    i = j
                    break
        i += 1
    return sql[tokens[i].start :] if i < len(tokens) else ""


def check_readonly(sql: str) -> None:
    """Refuse anything but a single read (see the module's docstring)."""
    try:
        statements = duckdb.extract_statements(sql)
        tokens = _tokens(sql)
    except duckdb.Error as exc:
        raise ReadOnlySqlError(f"could not parse the query: {exc}") from None
    if len(statements) != 1:
        raise ReadOnlySqlError(
            f"exactly one statement is allowed, got {len(statements)}; run them one at a time"
        )
    kind = statements[0].type
    tokens = [t for t in tokens if t.word or t.is_name]  # no comments
    _refuse_hidden(tokens)
    if kind == duckdb.StatementType.MULTI:
        _refuse_not_a_read(tokens, kind.name)
    elif kind not in _ALLOWED:
        raise ReadOnlySqlError(
            f"only SELECT queries are allowed here, not {kind.name}; poster-assets sql is read-only"
        )
    elif kind == duckdb.StatementType.EXPLAIN:
        inner = _explained(sql, tokens)
        if not inner.strip():
            raise ReadOnlySqlError("EXPLAIN of what? Give the query after it")
        check_readonly(inner)


def _timeout_message(timeout_s: float) -> str:
    return (
        f"the query ran for more than {timeout_s:g} s and was stopped: poster-assets sql interrupts "
        f"reads after {timeout_s:g} s so that a reader never keeps writers (ingest, extractors, dbt) "
        f"waiting for the database file past their {DEFAULT_LOCK_TIMEOUT_S:g} s lock wait. Raise the "
        f"limit with --timeout SECONDS or {TIMEOUT_ENV} (at most {MAX_TIMEOUT_S:g} s), or for longer "
        "analyses query a copy of the database file with duckdb."
    )


def run_readonly(
    db: Database, sql: str, timeout_s: float | None = None, memory_limit: str | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(columns, rows) of one read, interrupted after ``timeout_s`` (``sql_timeout_s``) with
    ``QueryTimeoutError``, within ``memory_limit`` (``sql_memory_limit``)."""
    check_readonly(sql)
    timeout_s = sql_timeout_s(timeout_s)
    memory_limit = sql_memory_limit(memory_limit)
    with db.connect(read_only=True) as conn:
        # A SELECT can still reach files (read_csv, a table function's ATTACH); the database is
        # all a read-only user needs. Then no setting can be changed back.
        conn.execute("SET enable_external_access = false")
        conn.execute(f"SET memory_limit = '{memory_limit}'")
        conn.execute("SET lock_configuration = true")
        fired = threading.Event()

        def interrupt() -> None:
            fired.set()
            with contextlib.suppress(duckdb.Error):  # finished and closed meanwhile
                conn.interrupt()

        timer = threading.Timer(timeout_s, interrupt)
        timer.daemon = True
        timer.start()
        try:
            cur = conn.execute(sql)
            columns = [d[0] for d in cur.description or []]
            rows = cur.fetchall()
        except duckdb.Error as exc:
            if fired.is_set() or isinstance(exc, duckdb.InterruptException):
                raise QueryTimeoutError(_timeout_message(timeout_s)) from None
            message = str(exc).split("\n")[0]
            if isinstance(exc, duckdb.OutOfMemoryException):
                message += f" (poster-assets sql reads within {memory_limit}: {MEMORY_ENV})"
            raise ReadOnlySqlError(message) from None
        finally:
            timer.cancel()
            timer.join()
    return columns, rows
