"""The dbt models over the annotations, materialized with ``dbt build`` so their tests run too.

DuckDB's single writer: ``sql_models`` is in the ``poster_db`` pool with the other steps that hold
the file for long, so none of them holds it while dbt builds. A batch step writing a chunk (they
open the file for one short transaction at a time), or a person's query (``poster-assets sql``, a
notebook), can still hold it at the moment dbt opens it, and dbt-duckdb then stops before any
node runs; the step asks Dagster to retry it (``RetryRequested``), and only for that reason: a
failed dbt test is an answer, not a hiccup.

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

dbt runs only when something it reads changed. A build's data version is what it read
(``inputs.inputs_version``); when every selected model already carries the current one, the step
materializes them again with it and their row counts, without a dbt process (seconds of imports
and parsing, 46 nodes), and the dbt tests show as skipped in that run, their last results standing.
"""

import json
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from poster_assets.defs.dbt.inputs import inputs_version, latest_data_version, load_manifest
from poster_assets.defs.dbt.inputs import models as dbt_models
from poster_assets.defs.dbt.project import poster_dbt_project, run_target_dir
from poster_assets.defs.resources import DB_POOL, ModelsResource, PosterStore
from poster_assets.extract.versions import current_versions, record_current_versions
from poster_assets.storage.catalog import refresh_catalog
from poster_assets.storage.database import Database, DatabaseBusyError


def _quiet_data_version_warning() -> None:
    """A data version on an Output is beta; it is still the idiom for "made from the same
    inputs". Set when the asset runs: a filter set when this module was imported did not last
    in every process (``ingest --extract`` printed it four times)."""
    warnings.filterwarnings("ignore", message="Parameter `data_version`", category=dg.BetaWarning)


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


def _partial_parse_state(runs: Path, op_name: str) -> Path | None:
    """The newest build's partial-parse state, else the manifest's. dbt parses the whole project
    again when the vars or the profile differ from the state's: the manifest's has neither the
    ``db_path`` var nor this home's database (seconds of parsing), an earlier build of this
    home has both. Files changed since are re-parsed by dbt either way."""
    name = "partial_parse.msgpack"
    built = [p / name for p in runs.glob(f"{op_name}-*") if (p / name).is_file()]
    if built:
        return max(built, key=lambda p: p.stat().st_mtime)
    manifests = Path(poster_dbt_project.manifest_path).with_name(name)
    return manifests if manifests.exists() else None


def build_target(home: Path, op_name: str, run_id: str) -> Path:
    """A new target folder for one dbt invocation under ``<home>/dbt/target`` (dbt's artifacts and,
    through DBT_LOG_PATH, which dagster-dbt sets to the target folder, its log), named as
    dagster-dbt names them; older ones are pruned. It starts with the latest partial-parse state
    (``_partial_parse_state``), so dbt does not parse the whole project again."""
    runs = run_target_dir(home)
    prune_run_folders(runs, op_name)
    partial = _partial_parse_state(runs, op_name)
    target = runs / f"{op_name}-{run_id[:7]}-{uuid.uuid4().hex[:7]}"
    target.mkdir(parents=True)
    if partial is not None:
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
    context: dg.AssetExecutionContext,
    events: list[Any],
    manifest: Mapping[str, Any],
    db: Database,
    data_version: dg.DataVersion | None,
) -> Iterator[Any]:
    """``events`` with each model's Output given its row count, column schema and, after a
    successful build, ``data_version`` (what the build read)."""

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
        if uid is None:
            yield event
            continue
        yield dg.Output(
            event.value,
            output_name=event.output_name,
            metadata={**event.metadata, **tables.get(uid, {}), "dbt_build": "built"},
            data_version=data_version,
            tags=event.tags,
        )


def _unchanged(
    context: dg.AssetExecutionContext,
    nodes: Mapping[dg.AssetKey, Mapping[str, Any]],
    version: str,
    db: Database,
) -> list[dg.Output] | None:
    """The selected models' Outputs without a build, when each already holds what a build would
    make (its latest materialization carries ``version``) and its relation is in the database:
    the same data version, row counts and column schemas read now. None when a build is due."""
    if set(nodes) != set(context.selected_asset_keys):
        return None
    if any(latest_data_version(context.instance, key) != version for key in nodes):
        return None
    try:
        tables = _model_table_metadata(db, nodes.values())
    except (duckdb.CatalogException, DatabaseBusyError):
        return None
    note = "skipped: nothing it reads changed since the build that made it (same data version)"
    return [
        dg.Output(
            None,
            output_name=context.assets_def.get_output_name_for_asset_key(key),
            metadata={"unique_id": node["unique_id"], **tables[node["unique_id"]], "dbt_build": note},
            data_version=dg.DataVersion(version),
        )
        for key, node in nodes.items()
    ]


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
    the marts take exactly the values the extractors call current.

    Each model's data version is what the build read (``inputs.inputs_version``: the project,
    the current versions, the content of the tables its SQL reads). When every selected model
    already carries the current one, dbt is not run: the models are materialized again with the
    same data version and their row counts (downstream assets stay current), and the dbt tests,
    which would test the same rows, show as skipped in this run, their last results standing."""
    _quiet_data_version_warning()
    refresh_catalog(store.db)  # rows batch steps left in the lake while the file was busy
    current = current_versions(models)
    manifest = load_manifest(Path(poster_dbt_project.manifest_path))
    version = inputs_version(store.db, current.by_asset(), manifest)
    selected = {k: n for k, n in dbt_models(manifest).items() if k in context.selected_asset_keys}
    if (outputs := _unchanged(context, selected, version, store.db)) is not None:
        context.log.info(f"dbt build skipped: its inputs are unchanged ({version})")
        yield from outputs
        return
    record_current_versions(store.db, current)
    target = build_target(store.home_path, context.op.name, context.run.run_id)
    db_path = json.dumps({"db_path": str(store.db_path)})
    invocation = dbt.cli(
        ["build", "--vars", db_path], context=context, target_path=target, raise_on_error=False
    )
    events = list(invocation.stream())
    # Only a build that passed stands for its inputs: after a failed one the next build runs again.
    stamp = dg.DataVersion(version) if invocation.is_successful() else None
    yield from _with_table_metadata(context, events, invocation.manifest, store.db, stamp)
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
