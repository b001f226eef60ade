"""Materialize assets without the UI, against the same Dagster instance the UI shows.

The CLI and ``make demo`` use this, so their runs, partitions and metadata previews appear
in ``dagster dev`` afterwards.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import yaml

from poster_assets import settings
from poster_assets.defs.partitions import BATCHES
from poster_assets.ingest.batches import BatchManifest
from poster_assets.storage.store import Store

if TYPE_CHECKING:
    from dagster import Definitions

# Step-level DEBUG events belong in the UI's run log, not on a person's terminal.
_QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}

# What the instance config must say, merged into an existing dagster.yaml. Runs stay on this
# machine, so the instance should not reach the network either; and DuckDB has one writer, so the
# assets of the ``poster_db`` pool (every writer) run one at a time, queued by Dagster rather
# than meeting on the file lock (the default limit applies to every pool without its own).
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
    behind marked failed."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home())))
    home.mkdir(parents=True, exist_ok=True)
    ensure_instance_config(home / "dagster.yaml")
    inst = dg.DagsterInstance.get()
    fail_orphaned_runs(inst)
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
    """Mark failed the runs still "started" whose process is gone (a killed `poster-assets run`,
    a closed laptop), and free their pool slots: otherwise the ``poster_db`` slot a killed writer
    held stays taken and every later writer waits for it forever. Returns their run ids."""
    orphans = []
    active = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    for record in inst.get_run_records(filters=active):
        run = record.dagster_run
        starts = inst.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
        pids = {e.dagster_event.pid for e in starts if e.dagster_event and e.dagster_event.pid}
        if not pids or any(_alive(pid) for pid in pids):
            continue
        inst.report_run_failed(run, f"the process that ran it ({', '.join(map(str, pids))}) is gone")
        inst.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        orphans.append(run.run_id)
    return orphans


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


def run_batch(inst: dg.DagsterInstance, batch: str, only_raw: bool = False) -> dg.ExecuteInProcessResult:
    job = definitions().resolve_job_def("batch_job")
    selection = [dg.AssetKey("raw_posters")] if only_raw else None
    return job.execute_in_process(
        partition_key=batch,
        instance=inst,
        raise_on_error=False,
        asset_selection=selection,
        run_config=_QUIET,
    )


def pending_batches(inst: dg.DagsterInstance, every: bool = False) -> list[str]:
    """Batches with an asset never materialized (or all of them with ``every``)."""
    batches = inst.get_dynamic_partitions(BATCHES)
    if every:
        return batches
    job = definitions().resolve_job_def("batch_job")
    pending: set[str] = set()
    for key in job.asset_layer.executable_asset_keys:
        done = inst.get_materialized_partitions(key)
        pending.update(b for b in batches if b not in done)
    return [b for b in batches if b in pending]


def run_corpus(inst: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """The corpus-wide assets: similarity indexes and the dbt models (with their tests)."""
    job = definitions().resolve_job_def("corpus_job")
    return job.execute_in_process(instance=inst, raise_on_error=False, run_config=_QUIET)


def run_ssl(inst: dg.DagsterInstance, steps: int | None = None) -> dg.ExecuteInProcessResult:
    """Train the SSL encoder and, once its health check passed, make it current (``ssl_job``:
    ``poster_encoder`` and ``models/ssl_encoder``); ``steps`` overrides the configured default."""
    job = definitions().resolve_job_def("ssl_job")
    config = {"ops": {"poster_encoder": {"config": {"steps": steps}}}} if steps is not None else {}
    return job.execute_in_process(instance=inst, raise_on_error=False, run_config={**_QUIET, **config})


def observe_models(inst: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Record the data version of every model source asset (``observe_models_job``: hashes of
    the weights in use, cached per file), so the UI shows what they are and marks stale what a
    changed model made, instead of "Never observed"."""
    job = definitions().resolve_job_def("observe_models_job")
    return job.execute_in_process(instance=inst, raise_on_error=False, run_config=_QUIET)


def run_pending(
    inst: dg.DagsterInstance, every: bool = False, echo: Callable[[str], None] = print
) -> list[tuple[str, bool]]:
    """Observe the models, then every batch with missing assets, then (if any batch ran, or
    with ``every``) the corpus. The observation is not in the results: a failed one is said and
    the runs go on."""
    if not observe_models(inst).success:
        echo("observing the models failed; see `poster-assets ui` for the run log")
    results = []
    for batch in pending_batches(inst, every):
        echo(f"materializing batch {batch} …")
        results.append((batch, run_batch(inst, batch).success))
    if results or every or not _corpus_materialized(inst):
        echo("materializing corpus-wide assets (indexes, dbt models) …")
        results.append(("corpus", run_corpus(inst).success))
    return results


def _corpus_materialized(inst: dg.DagsterInstance) -> bool:
    keys = definitions().resolve_job_def("corpus_job").asset_layer.executable_asset_keys
    return all(inst.get_latest_materialization_event(k) is not None for k in keys)
