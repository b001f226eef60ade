"""The dbt models over the annotations, materialized with ``dbt build`` so their tests run too.

DuckDB's single writer: ``sql_models`` is in the ``poster_db`` pool with every other writer, so
inside Dagster nothing else holds the file while dbt builds. A person's query at that moment
(``poster-assets sql``, a notebook) can still hold it, and dbt-duckdb then stops before any node
runs; the step asks Dagster to retry it (``RetryRequested``), and only for that reason: a failed
dbt test is an answer, not a hiccup.
"""

import json
import shutil
import time
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from poster_assets.defs.dbt.project import poster_dbt_project
from poster_assets.defs.resources import DB_POOL, ModelsResource, PosterStore
from poster_assets.extract.versions import current_versions, record_current_versions

# dagster-dbt gives each invocation its own target folder (about 2 MB: manifest, logs, results).
_KEEP_RUN_FOLDERS = 10
_LOCK_HELD = "could not set lock on file"
_LOCK_RETRIES = 4
_KEEP_RECENT_S = 3600.0


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


class _Translator(DagsterDbtTranslator):
    def get_automation_condition(self, dbt_resource_props: dict[str, Any]) -> dg.AutomationCondition | None:
        # Rebuild after upstream extractors update, once the corpus automation sensor is on.
        return dg.AutomationCondition.eager()


@dbt_assets(
    manifest=poster_dbt_project.manifest_path,
    project=poster_dbt_project,
    dagster_dbt_translator=_Translator(),
    pool=DB_POOL,
)
def sql_models(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    store: PosterStore,
    models: ModelsResource,
):
    """``dbt build`` of the project in ``dbt/``: staging views, the marts tables
    (poster_annotations, ssl_labels, extraction_coverage) and their tests, as asset checks.
    Before the build, the ``current_versions`` table is rewritten from the models in use, so
    the marts take exactly the values the extractors call current."""
    record_current_versions(store.db, current_versions(models))
    prune_run_folders(Path(poster_dbt_project.project_dir) / poster_dbt_project.target_path, context.op.name)
    db_path = json.dumps({"db_path": str(store.db_path)})
    invocation = dbt.cli(["build", "--vars", db_path], context=context, raise_on_error=False)
    produced = False
    for event in invocation.stream():
        produced = True
        yield event
    if invocation.is_successful():
        return
    error = invocation.get_error() or dg.Failure("dbt build failed")
    if not produced and _LOCK_HELD in str(error).lower():
        raise dg.RetryRequested(
            max_retries=_LOCK_RETRIES, seconds_to_wait=2 ** (context.retry_number + 1)
        ) from error
    raise error
