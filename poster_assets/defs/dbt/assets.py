"""The dbt models over the annotations, materialized with ``dbt build`` so their tests run too.

DuckDB's write lock: dbt-duckdb opens the database file itself and keeps it for the whole build,
and a file held by another writer makes dbt stop at once, before any node runs. So a build that
failed on the lock is started again after a jittered backoff, until ``PosterStore.lock_timeout_s``
is spent, like every other writer here. (dbt-duckdb's own ``retries.connect_attempts`` was tried
and dropped: it sleeps 2^n s per attempt for each connection dbt opens, 45 s for three tries.)
"""

import os
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource, dbt_assets

from poster_assets.defs.dbt.project import poster_dbt_project
from poster_assets.storage.resource import PosterStore

DB_ENV_VAR = "POSTER_ASSETS_DB"  # read by dbt/profiles.yml
_FIRST_DELAY_S = 1.0
_MAX_DELAY_S = 15.0
# dagster-dbt gives each invocation its own target folder (about 2 MB: manifest, logs, results).
_KEEP_RUN_FOLDERS = 10
_KEEP_RECENT_S = 3600.0


def _is_lock_conflict(invocation: DbtCliInvocation) -> bool:
    error = invocation.get_error()
    return error is not None and "could not set lock on file" in str(error).lower()


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    # The dbt subprocess inherits os.environ; put it back so in-process runs leave no trace.
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def prune_run_folders(target: Path, prefix: str, keep: int = _KEEP_RUN_FOLDERS) -> list[Path]:
    """Remove all but the ``keep`` newest per-invocation folders, sparing any touched in the last hour
    (a build still running beside this one). Returns what was removed."""
    folders = sorted(
        (p for p in target.glob(f"{prefix}-*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
    )
    cutoff = time.time() - _KEEP_RECENT_S
    removed = [p for p in folders[keep:] if p.stat().st_mtime < cutoff]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def build_with_lock_retry(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, lock_timeout_s: float
) -> Iterator[Any]:
    """Stream the events of ``dbt build``, starting it again while another process holds the lock."""
    deadline = time.monotonic() + lock_timeout_s
    delay = _FIRST_DELAY_S
    while True:
        invocation = dbt.cli(["build"], context=context, raise_on_error=False)
        produced = False
        for event in invocation.stream():
            produced = True
            yield event
        if invocation.is_successful():
            return
        if produced or not _is_lock_conflict(invocation) or time.monotonic() > deadline:
            raise invocation.get_error() or dg.Failure("dbt build failed")
        wait = delay * (0.5 + random.random())
        context.log.info(f"the poster database is locked by another process; dbt build again in {wait:.1f} s")
        time.sleep(wait)
        delay = min(delay * 2, _MAX_DELAY_S)


class _Translator(DagsterDbtTranslator):
    def get_automation_condition(self, dbt_resource_props: dict[str, Any]) -> dg.AutomationCondition | None:
        # Rebuild after upstream extractors update, once the corpus automation sensor is on.
        return dg.AutomationCondition.eager()


@dbt_assets(
    manifest=poster_dbt_project.manifest_path,
    project=poster_dbt_project,
    dagster_dbt_translator=_Translator(),
)
def sql_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, store: PosterStore):
    """``dbt build`` of the project in ``dbt/``: staging views, the marts tables
    (poster_annotations, ssl_labels, extraction_coverage) and their tests, as asset checks."""
    # A store nothing was ingested into yet still has every source table: the models build empty.
    store.db.ensure_schema()
    prune_run_folders(Path(poster_dbt_project.project_dir) / poster_dbt_project.target_path, context.op.name)
    with _env(DB_ENV_VAR, str(store.db_path)):
        yield from build_with_lock_retry(context, dbt, store.lock_timeout_s)
