"""Materialize assets without the UI, against the same Dagster instance the UI shows.

The CLI and ``make demo`` use this, so their runs (as runs of the UI's code location, see
``launch``), partitions and metadata previews appear in ``dagster dev`` afterwards.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import dagster as dg
import yaml
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from poster_assets import settings
from poster_assets.cli.launch import HOST, HOST_TAG, execute
from poster_assets.defs.batch_runs import batch_job_assets, stale_batches
from poster_assets.defs.partitions import BATCHES
from poster_assets.ingest.batches import BatchManifest
from poster_assets.storage.files import STALE_TEMP_AGE_S, SweepReport, sweep_temporaries
from poster_assets.storage.store import Store

if TYPE_CHECKING:
    from dagster import Definitions

    from poster_assets.extract.versions import CurrentVersions
    from poster_assets.models.hub import Models

FAISS_INDEX = dg.AssetKey("faiss_index")
# Step-level DEBUG events belong in the UI's run log, not on a person's terminal.
_QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}

# What the instance config must say, merged into an existing dagster.yaml. Runs stay on this
# machine, so the instance should not reach the network either; and DuckDB has one writer, so the
# steps of each pool (``poster_db``: those holding the file for long; ``poster_batch``: one
# batch's extraction) run one at a time, queued by Dagster rather than meeting on the file lock
# (the default limit applies to every pool without its own; a cluster raises ``poster_batch``).
SHIPPED_INSTANCE_CONFIG: dict[str, Any] = {
    "telemetry": {"enabled": False},
    "concurrency": {"pools": {"default_limit": 1, "granularity": "op"}},
}
# Dagster refuses these beside ``concurrency.pools`` (the older spelling of the same limit).
_INCOMPATIBLE_WITH_POOLS = ("default_op_concurrency_limit",)


def _merge(config: dict[str, Any], shipped: dict[str, Any]) -> bool:
    """Put every leaf of ``shipped`` into ``config`` (in place), keeping its other keys; True
    when anything changed."""
    changed = False
    for key, value in shipped.items():
        if isinstance(value, dict):
            if not isinstance(config.get(key), dict):
                config[key] = {}
                changed = True
            changed = _merge(config[key], value) or changed
        elif config.get(key) != value:
            config[key] = value
            changed = True
    return changed


def ensure_instance_config(path: Path) -> bool:
    """Create ``dagster.yaml`` at ``path`` with the shipped settings, or merge them into the
    one there (the user's own keys stay). The file is rewritten only when a setting was missing
    or different; True when it was written."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    config = yaml.safe_load(text) if text.strip() else {}
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a YAML mapping; fix or remove it")
    changed = _merge(config, SHIPPED_INSTANCE_CONFIG)
    for key in _INCOMPATIBLE_WITH_POOLS:
        if key in config["concurrency"]:
            del config["concurrency"][key]
            changed = True
    if changed or not path.exists():
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return changed


def instance() -> dg.DagsterInstance:
    """The persistent instance under ``$DAGSTER_HOME`` (default ``<home>/dagster``), its
    ``dagster.yaml`` holding the settings the project ships, with runs a killed process left
    behind marked failed and the stale temporaries it left under the home folder removed."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home())))
    home.mkdir(parents=True, exist_ok=True)
    ensure_instance_config(home / "dagster.yaml")
    inst = dg.DagsterInstance.get()
    fail_orphaned_runs(inst)
    sweep_leftovers()
    return inst


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def fail_orphaned_runs(inst: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs still "started" on this machine whose process is gone (a killed
    `poster-assets run`, a closed laptop), and free their pool slots: otherwise the slot a killed
    writer held stays taken and every later writer waits for it forever. Slots still held by a
    run that ended are freed too (dagster-celery keeps a step's slot when its worker could not
    start the step). Returns the ids of the runs marked failed."""
    orphans = []
    active = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    for record in inst.get_run_records(filters=active):
        run = record.dagster_run
        if run.tags.get(HOST_TAG, HOST) != HOST:  # its process is on another machine
            continue
        starts = inst.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
        pids = {e.dagster_event.pid for e in starts if e.dagster_event and e.dagster_event.pid}
        if not pids or any(_alive(pid) for pid in pids):
            continue
        inst.report_run_failed(run, f"the process that ran it ({', '.join(map(str, pids))}) is gone")
        inst.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        orphans.append(run.run_id)
    free_slots_of_ended_runs(inst)
    return orphans


def free_slots_of_ended_runs(inst: dg.DagsterInstance) -> list[str]:
    """Give back the pool slots claimed by runs that have ended; the ids of those runs."""
    storage = inst.event_log_storage
    holders = {
        claim.run_id
        for pool in storage.get_concurrency_keys()
        for claim in storage.get_concurrency_info(pool).claimed_slots
    }
    ended = [
        run_id for run_id in sorted(holders) if (run := inst.get_run_by_id(run_id)) is None or run.is_finished
    ]
    for run_id in ended:
        storage.free_concurrency_slots_for_run(run_id)
    return ended


@functools.cache
def definitions() -> Definitions:
    """The project's definitions, after making the dbt manifest the dbt assets load (the
    manifest is not parsed at import; this parses it when the dbt project changed)."""
    from poster_assets.defs.dbt.project import prepare_manifest

    prepare_manifest()
    from poster_assets.definitions import defs

    return defs


def register_batch(inst: dg.DagsterInstance, store: Store, manifest: BatchManifest) -> None:
    manifest.save(store.batches_dir)
    inst.add_dynamic_partitions(BATCHES, [manifest.batch])


def run_batch(inst: dg.DagsterInstance, batch: str, only_raw: bool = False) -> dg.JobExecutionResult:
    job = definitions().resolve_job_def("batch_job")
    selection = [dg.AssetKey("raw_posters")] if only_raw else None
    return execute(inst, job, partition_key=batch, asset_selection=selection, run_config=_QUIET)


def pending_batches(inst: dg.DagsterInstance, every: bool = False) -> list[str]:
    """Batches with an asset never materialized (or all of them with ``every``)."""
    batches = inst.get_dynamic_partitions(BATCHES)
    if every:
        return batches
    pending: set[str] = set()
    for name in batch_job_assets():
        done = inst.get_materialized_partitions(dg.AssetKey(name))
        pending.update(b for b in batches if b not in done)
    return [b for b in batches if b in pending]


def run_corpus(inst: dg.DagsterInstance, only: list[dg.AssetKey] | None = None) -> dg.JobExecutionResult:
    """The corpus-wide assets: similarity indexes and the dbt models (with their tests), or
    ``only`` those of them."""
    job = definitions().resolve_job_def("corpus_job")
    return execute(inst, job, asset_selection=only, run_config=_QUIET)


def run_ssl(inst: dg.DagsterInstance, steps: int | None = None) -> dg.JobExecutionResult:
    """Train the SSL encoder and, once its health check passed, make it current (``ssl_job``:
    ``poster_encoder`` and ``models/ssl_encoder``); ``steps`` overrides the configured default."""
    job = definitions().resolve_job_def("ssl_job")
    config = {"ops": {"poster_encoder": {"config": {"steps": steps}}}} if steps is not None else {}
    return execute(inst, job, run_config={**_QUIET, **config})


def observe_models(inst: dg.DagsterInstance) -> dg.JobExecutionResult:
    """Record the data version of every model source asset (``observe_models_job``: hashes of
    the weights in use, cached per file), so the UI shows what they are and marks stale what a
    changed model made, instead of "Never observed"."""
    return execute(inst, definitions().resolve_job_def("observe_models_job"), run_config=_QUIET)


def models_to_observe(inst: dg.DagsterInstance, models: Models) -> list[str]:
    """The registered models whose version in use is not the data version of their latest
    observation (all of them before the first): what an ``observe_models_job`` run would change."""
    from poster_assets.defs.models.sources import model_key
    from poster_assets.models.registry import builtin_specs

    changed = []
    for spec in builtin_specs():
        record = inst.get_latest_data_version_record(model_key(spec.name), is_source=True)
        observed = record.asset_observation if record else None
        if observed is None or observed.tags.get(DATA_VERSION_TAG) != models.data_version(spec.name):
            changed.append(spec.name)
    return changed


def corpus_behind(inst: dg.DagsterInstance, store: Store, current: CurrentVersions) -> list[dg.AssetKey]:
    """The corpus-wide assets whose latest materialization was not made from what they would be
    made from now, or never was: their data version is what they read (``faiss_index``: the
    vectors at the current versions; each dbt model: the dbt project, the current versions and
    the tables its SQL reads), so this compares strings instead of launching a run. Reads no
    Dagster definitions (seconds of dbt imports) unless the dbt manifest is missing."""
    from poster_assets.defs.dbt.inputs import (
        inputs_version,
        latest_data_version,
        load_manifest,
        manifest_path,
    )
    from poster_assets.defs.dbt.inputs import models as dbt_models
    from poster_assets.search.sync import vectors_version

    if not manifest_path().exists():
        from poster_assets.defs.dbt.project import prepare_manifest

        prepare_manifest()
    manifest = load_manifest()
    keys = [FAISS_INDEX, *sorted(dbt_models(manifest))]
    if not store.db_path.exists():
        return keys
    made_from = {FAISS_INDEX: vectors_version(store, current.kinds)}
    dbt_inputs = inputs_version(store.db, current.by_asset(), manifest)
    return [k for k in keys if latest_data_version(inst, k) != made_from.get(k, dbt_inputs)]


def refresh_corpus(
    inst: dg.DagsterInstance, store: Store, current: CurrentVersions, echo: Callable[[str], None] = print
) -> bool | None:
    """Run ``corpus_job`` when a corpus-wide asset is behind (``corpus_behind``); whether it
    succeeded, None when nothing was behind."""
    behind = corpus_behind(inst, store, current)
    if not behind:
        return None
    names = ", ".join(k.to_user_string() for k in behind[:4]) + (" …" if len(behind) > 4 else "")
    echo(f"materializing corpus-wide assets (indexes, dbt models) ({names} behind) …")
    return run_corpus(inst).success


def run_batches(
    inst: dg.DagsterInstance, batches: list[str], parallel: int = 1, echo: Callable[[str], None] = print
) -> list[tuple[str, bool]]:
    """Run ``batch_job`` for each of ``batches``, up to ``parallel`` runs at once; (batch,
    success) in the order given. Runs at once need an executor that puts steps in processes of
    their own (``POSTER_ASSETS_EXECUTOR``); each run is orchestrated by a child process of its
    own (Dagster sets up logging per run, which threads of one process would deadlock on), and
    how many batches extract at the same time is the ``poster_batch`` pool's limit."""
    if parallel <= 1 or len(batches) <= 1:
        results = []
        for batch in batches:
            echo(f"materializing batch {batch} …")
            results.append((batch, run_batch(inst, batch).success))
        return results
    if settings.executor_name() == "in_process":
        raise click.UsageError(
            f"running batches at once needs {settings.EXECUTOR_ENV}=multiprocess or celery: "
            "with the in-process executor each run would load every model in its own process"
        )
    for batch in batches:
        echo(f"materializing batch {batch} (up to {parallel} at once) …")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(parallel, len(batches)), mp_context=spawn) as pool:
        return list(zip(batches, pool.map(_run_batch_child, batches), strict=True))


def _run_batch_child(batch: str) -> bool:
    """One batch run in a child process of ``run_batches`` (on the instance the parent set up)."""
    with dg.DagsterInstance.get() as inst:
        return run_batch(inst, batch).success


def run_pending(
    inst: dg.DagsterInstance,
    every: bool = False,
    echo: Callable[[str], None] = print,
    parallel: int = 1,
) -> list[tuple[str, bool]]:
    """Observe the models if one changed, run every batch with missing assets (with ``every``:
    every batch a run would change, ``stale_batches``; up to ``parallel`` at once), then the
    corpus-wide assets that are behind their inputs. Nothing is launched that would change
    nothing: a refresh with nothing new costs the reads that tell so. The observation is not in
    the results: a failed one is said and the runs go on."""
    from poster_assets.extract.versions import current_versions
    from poster_assets.models.hub import Models

    store = Store.at()
    models = Models(store.models_dir)
    current = current_versions(models)
    if changed := models_to_observe(inst, models):
        echo(f"observing the models ({len(changed)} with a new version in use) …")
        if not observe_models(inst).success:
            echo("observing the models failed; see `poster-assets ui` for the run log")
    if every:
        stale = stale_batches(inst, store, current.by_asset())
        batches = [s.batch for s in stale]
        if skipped := len(inst.get_dynamic_partitions(BATCHES)) - len(batches):
            echo(f"{skipped} batch(es) complete at the current model versions or running: not run")
    else:
        batches = pending_batches(inst)
    results = run_batches(inst, batches, parallel, echo)
    corpus = refresh_corpus(inst, store, current, echo)
    if corpus is not None:
        results.append(("corpus", corpus))
    elif not results:
        echo("nothing to do: every batch, index and dbt model is up to date")
    return results


def corpus_built(inst: dg.DagsterInstance) -> bool:
    """Whether any corpus-wide asset (an index, a dbt model) was ever materialized."""
    keys = definitions().resolve_job_def("corpus_job").asset_layer.executable_asset_keys
    return any(inst.fetch_materializations(k, limit=1).records for k in keys)


# --- batches: leftovers and partitions (what Dagster knows of each: ``defs.batch_runs``) ---


def sweep_leftovers(home: Path | None = None, echo: Callable[[str], None] | None = None) -> SweepReport:
    """Remove the ``.tmp-*`` files and folders killed writers left under the home folder
    (blobs, indexes, batches, models, lake) that nothing touched for an hour, and say how much went
    (on stderr): a younger one may belong to a writer running now and stays."""
    home = home or settings.home_dir()
    report = sweep_temporaries(home, STALE_TEMP_AGE_S)
    if report.removed:
        say = echo or functools.partial(click.echo, err=True)
        say(
            f"removed {len(report.removed)} temporary leftover(s) of interrupted writes under {home} "
            f"({report.bytes / 1e6:.1f} MB, untouched for over {STALE_TEMP_AGE_S / 3600:g} h)"
        )
    return report


def ensure_registered(inst: dg.DagsterInstance, batch: str) -> bool:
    """Make ``batch`` a partition (a process stopped between writing its manifest and adding
    it); True when it was added."""
    if inst.has_dynamic_partition(BATCHES, batch):
        return False
    inst.add_dynamic_partitions(BATCHES, [batch])
    return True


def forget_batch(inst: dg.DagsterInstance, batch: str) -> bool:
    """Delete ``batch``'s dynamic partition (its run history stays); True when there was one."""
    if not inst.has_dynamic_partition(BATCHES, batch):
        return False
    inst.delete_dynamic_partition(BATCHES, batch)
    return True
