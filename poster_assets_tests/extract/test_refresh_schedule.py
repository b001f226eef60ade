"""The nightly refresh requests only the batches a run would change (the decision `run --all`
makes), and reads the models' versions without loading a network."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from poster_assets.defs.batch_runs import batch_job_assets
from poster_assets.defs.extract.schedules import refresh_schedule
from poster_assets.defs.ingest.assets import raw_posters
from poster_assets.defs.partitions import BATCHES
from poster_assets.defs.resources import ModelsResource, PosterStore
from poster_assets.demo import generate_corpus
from poster_assets.extract.versions import current_versions
from poster_assets.ingest.batch_state import EXTRACTORS
from poster_assets.ingest.batches import plan_batch
from poster_assets.models import hub


def _batch(store: PosterStore, instance: dg.DagsterInstance, folder: Path, seed: int) -> str:
    """A batch of two ingested posters, every batch_job asset reported materialized for it."""
    generate_corpus(folder, n=2, seed=seed)
    manifest, _ = plan_batch(store.batches_dir, folder)
    assert manifest is not None
    manifest.save(store.batches_dir)
    instance.add_dynamic_partitions(BATCHES, [manifest.batch])
    assert dg.materialize(
        [raw_posters], partition_key=manifest.batch, instance=instance, resources={"store": store}
    ).success
    for asset in batch_job_assets()[1:]:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=manifest.batch))
    return manifest.batch


def _record(store: PosterStore, batch: str, versions: dict[str, str], skip: tuple[str, str] | None) -> None:
    """An ok extraction record at ``versions`` for every (asset, ok poster) of ``batch`` but ``skip``."""
    posters = [
        p
        for (p,) in store.db.query(
            "SELECT poster_id FROM raw_posters WHERE batch = ? AND status = 'ok'", [batch]
        )
    ]
    rows = [
        [asset, poster, versions[asset], "ok", None, batch, 0.0, dt.datetime.now(dt.UTC)]
        for asset in EXTRACTORS
        for poster in posters
        if (asset, poster) != skip
    ]
    with store.db.transaction() as conn:
        conn.executemany("INSERT OR REPLACE INTO extractions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _tick(instance: dg.DagsterInstance, store: PosterStore, models: ModelsResource):
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=dt.datetime(2026, 11, 28, 3),
        resources={"store": store, "models": models},
    )
    return refresh_schedule(context)


def test_refresh_requests_only_batches_with_work_and_loads_no_model(
    tmp_path: Path, store: PosterStore, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = ModelsResource(models_dir=str(store.home_path / "models"))
    assert isinstance(_tick(instance, store, models), dg.SkipReason)  # no batch yet

    current = _batch(store, instance, tmp_path / "a", seed=41)
    stale = _batch(store, instance, tmp_path / "b", seed=42)
    versions = current_versions(models).by_asset()
    _record(store, current, versions, skip=None)
    # One poster of the second batch has no depth value at the current version (a run stopped).
    poster = store.db.query(
        "SELECT min(poster_id) FROM raw_posters WHERE batch = ? AND status = 'ok'", [stale]
    )
    _record(store, stale, versions, skip=("depth_maps", poster[0][0]))

    def no_loading(*args: object) -> None:
        raise AssertionError("the schedule loaded a model")

    monkeypatch.setattr(hub, "_runner", no_loading)
    monkeypatch.setattr(hub, "_ssl_embedder", no_loading)

    requests = _tick(instance, store, models)
    assert [r.partition_key for r in requests] == [stale]
    assert requests[0].run_key == f"refresh-{stale}-20261128T0300"

    _record(store, stale, versions, skip=None)
    skipped = _tick(instance, store, models)
    assert isinstance(skipped, dg.SkipReason)
    assert "nothing to do" in (skipped.skip_message or ""), skipped
