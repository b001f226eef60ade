"""The dbt models over the annotations, materialized with ``dbt build`` so their tests run too.

DuckDB's single writer: ``sql_models`` is in the ``poster_db`` pool with every other writer, so
inside Dagster nothing else holds the file while dbt builds. A person's query at that moment
(``poster-assets sql``, a notebook) can still hold it, and dbt-duckdb then stops before any node
runs; the step asks Dagster to retry it (``RetryRequested``), and only for that reason: a failed
dbt test is an answer, not a hiccup.

Each build writes its artifacts and ``dbt.log`` to its own folder under the store's home
(``<home>/dbt/target/sql_models-<run>-<id>``), never into the dbt project, which may be read-only.

Every dbt data test is an asset check named as the test (each has an explicit ``name:`` and
``description:`` in the project's YAML): tests on a model are checks on that model, tests on a
source (``raw_posters``, ``ocr_text``, ...) are checks on the Dagster asset that writes it, which
this multi-asset runs and reports as its own (``enable_source_tests_as_checks``).

Each model's materialization carries ``dagster/row_count`` and ``dagster/column_schema`` (DuckDB's
own types, dbt's column descriptions), read from the database once dbt has exited: dbt-duckdb
holds the file for the whole build, and dagster-dbt's ``fetch_row_counts`` /
``fetch_column_metadata`` give no counts for views and dbt's adapter types (``character
varying(256)`` for a ``VARCHAR[]``). So the step holds the build's events until then and yields
them in dbt's order; dbt's own log still streams to the step's stdout while it runs.
"""

import json
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from poster_assets.defs.dbt.project import poster_dbt_project, run_target_dir
from poster_assets.defs.resources import DB_POOL, ModelsResource, PosterStore
from poster_assets.extract.versions import current_versions, record_current_versions
from poster_assets.storage.database import Database, DatabaseBusyError

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

    def get_asset_check_spec(
        self, asset_spec: dg.AssetSpec, manifest: Mapping[str, Any], unique_id: str, project: Any
    ) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        # dagster-dbt takes a check's description from the test's `meta`; ours is the test's own
        # `description:` (what it guards).
        description = manifest["nodes"][unique_id].get("description")
        return spec._replace(description=description) if spec and description else spec


def _model_table_metadata(db: Database, models: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """dbt unique_id -> ``dagster/row_count`` and ``dagster/column_schema`` of each model's table
    or view as the database holds it now: DuckDB's own column types, dbt's column descriptions."""
    found = {}
    with db.connect(read_only=True) as conn:
        for node in models:
            relation = f'"{node["schema"]}"."{node["alias"]}"'
            described = conn.execute(f"DESCRIBE {relation}").fetchall()
            (rows,) = conn.execute(f"SELECT count(*) FROM {relation}").fetchone()
            docs = node.get("columns", {})
            columns = [
                dg.TableColumn(
                    name,
                    kind,
                    description=docs.get(name, {}).get("description") or None,
                    constraints=dg.TableColumnConstraints(nullable=null == "YES"),
                )
                for name, kind, null, *_ in described
            ]
            found[node["unique_id"]] = {
                "dagster/row_count": int(rows),
                "dagster/column_schema": dg.TableSchema(columns=columns),
            }
    return found


def _with_table_metadata(
    context: dg.AssetExecutionContext, events: list[Any], manifest: Mapping[str, Any], db: Database
) -> Iterator[Any]:
    """``events`` with each model's Output given its row count and column schema."""

    def model_id(event: Any) -> str | None:
        is_model = isinstance(event, dg.Output) and "unique_id" in event.metadata
        return event.metadata["unique_id"].value if is_model else None

    built = [uid for uid in map(model_id, events) if uid]
    try:
        tables = _model_table_metadata(db, [manifest["nodes"][uid] for uid in built])
    except DatabaseBusyError as exc:
        # The models are built; a reader outside Dagster holding the file costs their sizes only.
        context.log.warning(f"row counts and column schemas left out: {exc}")
        tables = {}
    for event in events:
        uid = model_id(event)
        yield event.with_metadata({**event.metadata, **tables[uid]}) if uid in tables else event


@dbt_assets(
    manifest=poster_dbt_project.manifest_path,
    project=poster_dbt_project,
    dagster_dbt_translator=_Translator(
        # Code references: each model links to its .sql file, as the Python assets to theirs.
        DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True, enable_code_references=True)
    ),
    pool=DB_POOL,
)
def sql_models(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    store: PosterStore,
    models: ModelsResource,
):
    """``dbt build`` of the project in ``dbt/``: staging views, the marts tables
    (poster_annotations, ssl_labels, extraction_coverage) and every dbt test, as asset checks on
    the models and on the assets whose tables they read (raw_posters, ocr_text, ...).
    Before the build, the ``current_versions`` table is rewritten from the models in use, so
    the marts take exactly the values the extractors call current."""
    record_current_versions(store.db, current_versions(models))
    target = build_target(store.home_path, context.op.name, context.run.run_id)
    db_path = json.dumps({"db_path": str(store.db_path)})
    invocation = dbt.cli(
        ["build", "--vars", db_path], context=context, target_path=target, raise_on_error=False
    )
    events = list(invocation.stream())
    yield from _with_table_metadata(context, events, invocation.manifest, store.db)
    if invocation.is_successful():
        return
    error = invocation.get_error() or dg.Failure("dbt build failed")
    if not events and _LOCK_HELD in str(error).lower():
        raise dg.RetryRequested(
            max_retries=_LOCK_RETRIES, seconds_to_wait=2 ** (context.retry_number + 1)
        ) from error
    raise error


# Every check this step reports, those on other domains' assets included. dagster-dbt runs the
# tests of the sources under the selected models in every build, so a job with sql_models
# selects these (else Dagster warns each result "was yielded which is not selected"), and a job
# of those other assets leaves them out (else it runs dbt, as a subset of this step, for them).
SQL_MODEL_CHECKS = dg.AssetSelection.checks(sql_models)
