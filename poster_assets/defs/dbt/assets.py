"""The dbt models over the annotations, materialized with ``dbt build`` so their tests run too.

DuckDB's single writer: ``sql_models`` is in the ``poster_db`` pool with every other writer, so
inside Dagster nothing else holds the file while dbt builds. A person's query at that moment
(``poster-assets sql``, a notebook) can still hold it, and dbt-duckdb then stops before any node
runs; the step asks Dagster to retry it (``RetryRequested``), and only for that reason: a failed
dbt test is an answer, not a hiccup.

Each build writes its artifacts and ``dbt.log`` to its own folder under the store's home
(``<home>/dbt/target/sql_models-<run>-<id>``), never into the dbt project, which may be read-only.
"""

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from poster_assets.defs.dbt.project import poster_dbt_project, run_target_dir
from poster_assets.defs.resources import DB_POOL, ModelsResource, PosterStore
from poster_assets.extract.versions import current_versions, record_current_versions

# Each invocation has its own target folder (about 2 MB: manifest, logs, results).
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


def build_target(home: Path, op_name: str, run_id: str) -> Path:
    """A new target folder for one dbt invocation under ``<home>/dbt/target`` (dbt's artifacts and,
    through DBT_LOG_PATH, which dagster-dbt sets to the target folder, its log), named as
    dagster-dbt names them; older ones are pruned. It starts with the manifest's partial-parse
    state, so dbt does not parse the whole project again when that state still holds."""
    runs = run_target_dir(home)
    prune_run_folders(runs, op_name)
    target = runs / f"{op_name}-{run_id[:7]}-{uuid.uuid4().hex[:7]}"
    target.mkdir(parents=True)
    partial = Path(poster_dbt_project.manifest_path).with_name("partial_parse.msgpack")
    if partial.exists():
        shutil.copyfile(partial, target / partial.name)
    return target


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
    target = build_target(store.home_path, context.op.name, context.run.run_id)
    db_path = json.dumps({"db_path": str(store.db_path)})
    invocation = dbt.cli(
        ["build", "--vars", db_path], context=context, target_path=target, raise_on_error=False
    )
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
