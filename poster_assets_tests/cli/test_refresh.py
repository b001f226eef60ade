"""`poster-assets run --all` launches only what would change something: a batch complete at the
current model versions is not run, the indexes and marts only when what they read changed, and a
refresh with nothing new starts no run at all (the CLI tells so without loading the definitions'
dbt assets)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from poster_assets.cli import main, runs
from poster_assets.defs.dbt.inputs import load_manifest
from poster_assets.defs.dbt.inputs import models as dbt_models
from poster_assets.defs.jobs import CORPUS_GROUPS
from poster_assets.demo import generate_corpus
from poster_assets.storage.store import Store


def _cli(*args: str) -> str:
    out = CliRunner().invoke(main, list(args))
    assert out.exit_code == 0, out.output
    return out.output


def _job_keys(job: str) -> set[dg.AssetKey]:
    return set(runs.definitions().resolve_job_def(job).asset_layer.executable_asset_keys)


def test_what_the_cli_knows_without_definitions_is_what_the_jobs_select() -> None:
    assert {dg.AssetKey(a) for a in runs.batch_job_assets()} == _job_keys("batch_job")
    assert {runs.FAISS_INDEX, *dbt_models(load_manifest())} == _job_keys("corpus_job")


def test_corpus_assets_have_no_time_based_freshness_policy() -> None:
    # They are materialized only when their inputs changed: a clock would call a quiet day late.
    corpus = [s for s in runs.definitions().resolve_all_asset_specs() if s.group_name in CORPUS_GROUPS]
    assert corpus and all(s.freshness_policy is None for s in corpus)


@pytest.mark.slow
def test_run_all_launches_only_what_would_change(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "posters"
    generate_corpus(folder, n=2, seed=31)
    _cli("ingest", str(folder), "--extract")
    store = Store.at(home)
    inst = runs.instance()
    jobs = [r.job_name for r in inst.get_runs()]

    # Nothing new: no run but the models' first observation, then none at all.
    out = _cli("run", "--all")
    assert "1 batch(es) complete at the current model versions" in out, out
    assert "nothing to do" in out and "0 run(s)" in out, out
    assert [r.job_name for r in inst.get_runs()] == ["observe_models_job", *jobs]
    launched = inst.get_runs_count()
    assert "observing" not in _cli("run", "--all")
    assert inst.get_runs_count() == launched

    # A sidecar title fixed in place, outside Dagster: only the corpus job, which rebuilds the
    # marts; no vector changed, so the neighbours are left as they are.
    with store.db.transaction() as conn:
        conn.execute(
            "UPDATE raw_posters SET title = 'FIXED' WHERE status = 'ok' AND file_name = "
            "(SELECT min(file_name) FROM raw_posters WHERE status = 'ok')"
        )
    out = _cli("run", "--all")
    assert "materializing batch" not in out and "1 run(s), 0 failed" in out, out
    assert store.db.query("SELECT count(*) FROM marts.poster_annotations WHERE sidecar_title = 'FIXED'") == [
        (1,)
    ]
    (latest,) = inst.fetch_materializations(runs.FAISS_INDEX, limit=1).records
    assert latest.asset_materialization.metadata["neighbors"].value == "unchanged"

    # A poster's depth record gone (as if its run had stopped before it): that batch runs again
    # and re-extracts it, then the marts follow.
    poster = store.db.query("SELECT min(poster_id) FROM raw_posters WHERE status = 'ok'")[0][0]
    with store.db.transaction() as conn:
        conn.execute("DELETE FROM extractions WHERE asset = 'depth_maps' AND poster_id = ?", [poster])
    out = _cli("run", "--all")
    assert "materializing batch" in out and "2 run(s), 0 failed" in out, out
    assert store.db.query(
        "SELECT status FROM extractions WHERE asset = 'depth_maps' AND poster_id = ?", [poster]
    ) == [("ok",)]
    assert "0 run(s)" in _cli("run", "--all")
