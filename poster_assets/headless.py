"""Materialize assets without the UI, against the same Dagster instance the UI shows.

The CLI and ``make demo`` use this, so their runs, partitions and metadata previews appear
in ``dagster dev`` afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from poster_assets import settings
from poster_assets.defs.partitions import BATCHES
from poster_assets.ingest.batches import BatchManifest, known_files, new_batch, scan_folder
from poster_assets.ingest.sidecar import find_sidecar
from poster_assets.storage.resource import PosterStore

# Step-level DEBUG events belong in the UI's run log, not on a person's terminal.
_QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def instance() -> dg.DagsterInstance:
    """The persistent instance under ``$DAGSTER_HOME`` (default ``<home>/dagster``)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        # Runs stay on this machine; the instance should not try to reach the network either.
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return dg.DagsterInstance.get()


def plan_batch(
    store: PosterStore, folder: Path, sidecar: Path | None, recursive: bool
) -> BatchManifest | None:
    """A manifest of the folder's files that no earlier batch holds, or None if there are none."""
    folder = Path(folder).resolve()
    sidecar = Path(sidecar).resolve() if sidecar else find_sidecar(folder)
    seen = known_files(store.batches_dir)
    entries = [e for e in scan_folder(folder, recursive=recursive, sidecar=sidecar) if e.key not in seen]
    return new_batch(folder, entries, sidecar, prefix="cli") if entries else None


def register_batch(inst: dg.DagsterInstance, store: PosterStore, manifest: BatchManifest) -> None:
    manifest.save(store.batches_dir)
    inst.add_dynamic_partitions(BATCHES, [manifest.batch])


def run_batch(inst: dg.DagsterInstance, batch: str, only_raw: bool = False) -> dg.ExecuteInProcessResult:
    from poster_assets.definitions import defs

    job = defs.resolve_job_def("batch_job")
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
    from poster_assets.definitions import defs

    batches = inst.get_dynamic_partitions(BATCHES)
    if every:
        return batches
    job = defs.resolve_job_def("batch_job")
    pending: set[str] = set()
    for key in job.asset_layer.executable_asset_keys:
        done = inst.get_materialized_partitions(key)
        pending.update(b for b in batches if b not in done)
    return [b for b in batches if b in pending]


def run_corpus(inst: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """The corpus-wide assets: similarity indexes and the dbt models (with their tests)."""
    from poster_assets.definitions import defs

    job = defs.resolve_job_def("corpus_job")
    return job.execute_in_process(instance=inst, raise_on_error=False, run_config=_QUIET)


def run_ssl(inst: dg.DagsterInstance, steps: int | None = None) -> dg.ExecuteInProcessResult:
    """Train the SSL encoder (``ssl_job``); ``steps`` overrides the configured default."""
    from poster_assets.definitions import defs

    job = defs.resolve_job_def("ssl_job")
    config = {"ops": {"poster_encoder": {"config": {"steps": steps}}}} if steps is not None else {}
    return job.execute_in_process(instance=inst, raise_on_error=False, run_config={**_QUIET, **config})


def run_pending(
    inst: dg.DagsterInstance, every: bool = False, echo: Callable[[str], None] = print
) -> list[tuple[str, bool]]:
    """Every batch with missing assets, then (if any batch ran, or with ``every``) the corpus."""
    results = []
    for batch in pending_batches(inst, every):
        echo(f"materializing batch {batch} …")
        results.append((batch, run_batch(inst, batch).success))
    if results or every or not _corpus_materialized(inst):
        echo("materializing corpus-wide assets (indexes, dbt models) …")
        results.append(("corpus", run_corpus(inst).success))
    return results


def _corpus_materialized(inst: dg.DagsterInstance) -> bool:
    from poster_assets.definitions import defs

    keys = defs.resolve_job_def("corpus_job").asset_layer.executable_asset_keys
    return all(inst.get_latest_materialization_event(k) is not None for k in keys)
