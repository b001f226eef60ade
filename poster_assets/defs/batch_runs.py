"""What Dagster knows of each batch, and which batches a ``batch_job`` run would change.

``stale_batches`` is the one decision of "is there work for this batch": ``poster-assets run --all``
launches only those batches and the nightly ``refresh_schedule`` requests only those. Both read
the home folder's facts (``ingest.batch_state.storage_facts``) at the versions the models folder
serves (``extract.versions.current_versions``, which compiles nothing) and the instance's runs
and materializations; neither loads the definitions.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from poster_assets.defs.partitions import BATCHES
from poster_assets.ingest.batch_state import (
    EXTRACTORS,
    RAW_ASSET,
    RUNNING,
    BatchState,
    RunFacts,
    decide_state,
    manifest_names,
    storage_facts,
)
from poster_assets.storage.store import Store

PARTITION_TAG = "dagster/partition"
_IN_PROGRESS = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.MANAGED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}
# A cancelled run, and one fail_orphaned_runs found killed, left the batch as unfinished as a failed one.
_FAILED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def batch_job_assets() -> tuple[str, ...]:
    """The assets ``batch_job`` materializes per batch, raw_posters and the extractors first
    (a test keeps this equal to the job's selection: telling a batch's state then loads no
    definitions)."""
    return (RAW_ASSET, *EXTRACTORS)


def _step_keys(inst: dg.DagsterInstance, run_id: str, of_type) -> list[str]:
    keys: list[str] = []
    for entry in inst.all_logs(run_id, of_type=of_type):
        key = entry.dagster_event.step_key if entry.dagster_event else None
        if key and key not in keys:
            keys.append(key)
    return keys


def _failure(inst: dg.DagsterInstance, run_id: str) -> tuple[tuple[str, ...], str | None]:
    """(the steps that failed, or that started and never ended when the run was killed or
    cancelled, marked "(interrupted)"; the first line of why) for a failed run."""
    steps: list[str] = []
    why = None
    for entry in inst.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event is None:
            continue
        if event.step_key and event.step_key not in steps:
            steps.append(event.step_key)
        data = event.step_failure_data
        described = data.user_failure_data.description if data and data.user_failure_data else None
        error = data.error if data is not None else None
        while error is not None and error.cause is not None:  # the user's exception, not Dagster's wrapper
            error = error.cause
        if why is None and described:  # a dg.Failure says it in words, not as a class name
            why = described.strip().splitlines()[0]
        elif why is None and error is not None and error.message.strip():
            why = error.message.strip().splitlines()[0]
    if not steps:  # killed or cancelled mid-step: the steps that started and never ended
        started = _step_keys(inst, run_id, dg.DagsterEventType.STEP_START)
        ended = _step_keys(
            inst,
            run_id,
            {
                dg.DagsterEventType.STEP_SUCCESS,
                dg.DagsterEventType.STEP_FAILURE,
                dg.DagsterEventType.STEP_SKIPPED,
            },
        )
        steps = [f"{k} (interrupted)" for k in started if k not in ended]
    if why is None:
        for entry in inst.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
            message = (entry.dagster_event.message if entry.dagster_event else None) or entry.message
            if message:
                why = message.strip().splitlines()[0]
                break
    return tuple(steps), why


def batch_run_facts(
    inst: dg.DagsterInstance, batches: list[str], assets: tuple[str, ...]
) -> dict[str, RunFacts]:
    """Per batch: whether it is a partition, its latest run (any job: a UI materialization of
    one asset counts) with its status, and which of ``assets`` are materialized for it."""
    registered = set(inst.get_dynamic_partitions(BATCHES))
    done = {a: inst.get_materialized_partitions(dg.AssetKey.from_user_string(a)) for a in assets}
    out = {}
    for batch in batches:
        materialized = frozenset(a for a in assets if batch in done[a])
        records = inst.get_run_records(filters=dg.RunsFilter(tags={PARTITION_TAG: batch}), limit=1)
        if not records:
            out[batch] = RunFacts(batch in registered, materialized=materialized)
            continue
        run = records[0].dagster_run
        if run.status in _IN_PROGRESS:
            status, steps, why = "running", (), None
        elif run.status in _FAILED:
            status = "failed"
            steps, why = _failure(inst, run.run_id)
            if run.status == dg.DagsterRunStatus.CANCELED and why is None:
                why = "the run was cancelled"
        else:
            status, steps, why = "succeeded", (), None
        out[batch] = RunFacts(batch in registered, run.run_id, status, steps, why, materialized)
    return out


def _current_versions(store: Store) -> dict[str, str] | None:
    """asset -> the version a re-run would skip; None when the models cannot say (then the
    latest record of each poster counts)."""
    try:
        from poster_assets.extract.versions import current_versions
        from poster_assets.models.hub import Models

        return current_versions(Models(store.models_dir)).by_asset()
    except Exception:  # noqa: BLE001 - a listing must not fail on a broken model folder
        return None


def batch_states(
    inst: dg.DagsterInstance,
    store: Store,
    batches: list[str] | None = None,
    versions: Mapping[str, str] | None = None,
) -> list[BatchState]:
    """The state of ``batches`` (default: every batch with a manifest, rows or a partition),
    from the home folder's facts and Dagster's, oldest first; extraction counted at
    ``versions`` (default: the current ones)."""
    versions = versions or _current_versions(store)
    if batches is None:
        names = set(manifest_names(store.batches_dir)) | set(inst.get_dynamic_partitions(BATCHES))
        facts = storage_facts(store.db, store.batches_dir, None, versions, include=names)
    else:
        facts = storage_facts(store.db, store.batches_dir, batches, versions)
    assets = batch_job_assets()
    runs = batch_run_facts(inst, list(facts), assets)
    states = [decide_state(facts[b], runs[b], assets) for b in facts]
    return sorted(states, key=lambda s: (s.facts.created_at or "", s.batch))


def stale_batches(inst: dg.DagsterInstance, store: Store, versions: Mapping[str, str]) -> list[BatchState]:
    """The states of the batches a ``batch_job`` run would change: an asset never materialized,
    the latest run failed, or an ok poster without a value (or a failure) at the current
    ``versions`` (asset -> version). Complete batches at those versions, and running ones, are
    left out: their run would only read what is there."""
    states = batch_states(inst, store, inst.get_dynamic_partitions(BATCHES), versions)
    return [s for s in states if s.state != RUNNING and not s.up_to_date]
