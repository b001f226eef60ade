"""The trained encoder as Dagster assets: ``poster_encoder`` trains and exports, the blocking check
``encoder_not_collapsed`` judges the export, and only when it passed does ``models/ssl_encoder``
make the encoder current; ``foreground_embeddings`` then adds the ``ssl`` kind, ``faiss_index``
its index and search answers ``kind="ssl"``. A re-training redoes the ssl kind and nothing
else; a collapsed training stops at the check and leaves the current encoder as it was.

Runs on a private copy of the session's extracted SSL store (8 posters, dbt models built), with
tiny training runs (10 steps at 64 px): real torch, OpenVINO, FAISS and DuckDB throughout."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from poster_assets.defs.embed.assets import foreground_embeddings
from poster_assets.defs.embed.checks import NORM_CHECK, embedding_norm_check
from poster_assets.defs.partitions import BATCHES
from poster_assets.defs.resources import ModelsResource, PosterStore
from poster_assets.defs.search.assets import faiss_index
from poster_assets.defs.ssl import assets as ssl_assets
from poster_assets.defs.ssl.assets import (
    CURRENT_ENCODER_KEY,
    HEALTH_CHECK,
    SslConfig,
    encoder_health_check,
    poster_encoder,
    ssl_encoder,
)
from poster_assets.embed.vectors import missing_kinds
from poster_assets.extract.versions import ALL_KINDS, SSL_KIND, current_versions, kind_versions
from poster_assets.models.ssl_encoder import POINTER, current_encoder, promote, ssl_dir
from poster_assets.search.api import search
from poster_assets.ssl.config import TrainConfig

TINY = {"steps": 10, "image_size": 64, "batch_size": 8, "device": "cpu", "lr": 0.05}
OTHER_KINDS = ("foreground", "poster", "pixels")
SSL_ASSETS = [poster_encoder, encoder_health_check, ssl_encoder]


@dataclass
class Runs:
    store: PosterStore
    models: ModelsResource
    batch: str
    first_encoder: dict  # poster_encoder metadata, seed 0
    first_check: bool
    first_promoted: dict | None  # models/ssl_encoder metadata
    kinds_before_training: list[str]
    first_embed: dict
    first_index: dict
    other_rows_before: list[tuple]
    todo_after_retrain: dict[str, list[str]]
    second_encoder: dict  # seed 1
    second_promoted: dict | None
    second_embed: dict
    second_index: dict
    other_rows_after: list[tuple]
    pointer_before_collapse: str
    collapsed_success: bool
    collapsed_encoder: dict | None
    collapsed_check: bool
    collapsed_promoted: dict | None
    pointer_after_collapse: str


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict | None:
    """The metadata of ``key``'s materialization in the run, as plain values; None when none."""
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key == key:
            return {k: v.value for k, v in mat.metadata.items()}
    return None


def _check_passed(result: dg.ExecuteInProcessResult, name: str) -> bool:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation.passed


def _train(store, models, instance, seed: int, must_pass: bool = True) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        SSL_ASSETS,
        instance=instance,
        resources={"store": store, "models": models},
        run_config={"ops": {"poster_encoder": {"config": {**TINY, "seed": seed}}}},
        raise_on_error=must_pass,
    )
    assert result.success or not must_pass
    return result


def _embed(store, models, instance, batch: str) -> dict:
    result = dg.materialize(
        [foreground_embeddings, embedding_norm_check],
        partition_key=batch,
        instance=instance,
        resources={"store": store, "models": models},
    )
    assert result.success and _check_passed(result, NORM_CHECK)
    return _metadata(result, foreground_embeddings.key)


def _index(store, models, instance) -> dict:
    result = dg.materialize([faiss_index], instance=instance, resources={"store": store, "models": models})
    assert result.success
    return _metadata(result, faiss_index.key)


def _other_rows(store: PosterStore) -> list[tuple]:
    return store.db.query(
        "SELECT poster_id, kind, model_version, embedding FROM foreground_embeddings "
        "WHERE kind <> 'ssl' ORDER BY ALL"
    )


def _pointer(models: ModelsResource) -> str:
    return (ssl_dir(models.path) / POINTER).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def runs(ssl_store: PosterStore, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    home = tmp_path_factory.mktemp("ssl_assets") / "home"
    shutil.copytree(ssl_store.home_path, home, ignore=shutil.ignore_patterns("dagster"))
    (home / "dagster").mkdir()
    store = PosterStore(home=str(home))
    models = ModelsResource(models_dir=str(home / "models"))
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        mp.setenv("POSTER_ASSETS_HOME", str(home))
        batches = sorted(json.loads(p.read_text())["batch"] for p in store.batches_dir.glob("*.json"))
        instance.add_dynamic_partitions(BATCHES, batches)
        (batch,) = batches
        kinds_before = list(current_versions(models).kinds)  # no encoder yet
        first = _train(store, models, instance, seed=0)
        first_embed = _embed(store, models, instance, batch)
        first_index = _index(store, models, instance)
        other_before = _other_rows(store)
        second = _train(store, models, instance, seed=1)
        ids = [r[0] for r in store.db.query("SELECT poster_id FROM raw_posters WHERE status = 'ok'")]
        todo = missing_kinds(store, ids, current_versions(models).kinds)
        second_embed = _embed(store, models, instance, batch)
        second_index = _index(store, models, instance)
        # A collapse threshold above the healthy std: the run trains 2 steps, stops as collapsed
        # (on_collapse="warn" in Dagster, so it still materializes) and its check then fails.
        pointer_before = _pointer(models)
        collapsing = dataclasses.replace(ssl_assets._DEFAULTS, collapse_ratio=5.0, collapse_patience=2)
        mp.setattr(ssl_assets, "_DEFAULTS", collapsing)
        with pytest.warns(UserWarning, match="collapsed at step 1"):
            collapsed = _train(store, models, instance, seed=2, must_pass=False)
        pointer_after = _pointer(models)
    return Runs(
        store=store,
        models=models,
        batch=batch,
        first_encoder=_metadata(first, poster_encoder.key),
        first_check=_check_passed(first, HEALTH_CHECK),
        first_promoted=_metadata(first, CURRENT_ENCODER_KEY),
        kinds_before_training=kinds_before,
        first_embed=first_embed,
        first_index=first_index,
        other_rows_before=other_before,
        todo_after_retrain=todo,
        second_encoder=_metadata(second, poster_encoder.key),
        second_promoted=_metadata(second, CURRENT_ENCODER_KEY),
        second_embed=second_embed,
        second_index=second_index,
        other_rows_after=_other_rows(store),
        pointer_before_collapse=pointer_before,
        collapsed_success=collapsed.success,
        collapsed_encoder=_metadata(collapsed, poster_encoder.key),
        collapsed_check=_check_passed(collapsed, HEALTH_CHECK),
        collapsed_promoted=_metadata(collapsed, CURRENT_ENCODER_KEY),
        pointer_after_collapse=pointer_after,
    )


def test_launchpad_defaults_are_the_training_defaults() -> None:
    # One place for the defaults: offline evaluation trains the model production trains.
    assert SslConfig().train_config() == dataclasses.replace(TrainConfig(), on_collapse="warn")
    assert SslConfig().image_size == TrainConfig().image_size == 96


@pytest.mark.slow
def test_poster_encoder_trains_exports_and_a_passed_check_promotes_it(runs: Runs) -> None:
    meta = runs.first_encoder
    assert runs.kinds_before_training == list(OTHER_KINDS)  # no ssl kind without an encoder
    assert meta["steps"] == TINY["steps"] and meta["collapsed"] is False and meta["diverged"] is False
    assert np.isfinite(meta["final_total_loss"]) and meta["embedding_std"] > 0
    assert meta["loss_curves"].startswith("![loss curves](data:image/")
    assert runs.first_check  # the blocking health check passed...
    assert runs.first_promoted is not None  # ...so models/ssl_encoder ran
    assert runs.first_promoted["version"] == meta["version"]
    ssl = ssl_dir(runs.models.path)
    pointer = json.loads(_pointer(runs.models))
    assert not Path(pointer["ir_path"]).is_absolute()  # relative: a copied home keeps working
    # A new seed gives a new encoder; the pointer names the newest, both folders are kept.
    assert runs.second_promoted is not None
    assert runs.first_encoder["version"] != runs.second_encoder["version"] == pointer["version"]
    assert runs.second_promoted["version"] == pointer["version"]
    encoder = current_encoder(runs.models.path)
    assert encoder is not None and runs.models.ssl_embedder(encoder).version == encoder.version
    assert encoder.checkpoint.is_file() and encoder.checkpoint.parent == encoder.ir_path.parent
    assert encoder.data_version == runs.second_encoder["data_version"] == runs.first_encoder["data_version"]
    # Three trainings (the third collapsed): three exports, the current one is the second's.
    assert len(list(ssl.glob("ssl_encoder_*/model.xml"))) == 3
    assert not list(ssl.glob(".*"))  # no temporary run folders or pointer files left behind


@pytest.mark.slow
def test_a_collapsed_training_fails_its_check_and_is_not_promoted(runs: Runs) -> None:
    meta = runs.collapsed_encoder
    assert meta is not None and meta["collapsed"] is True and meta["steps"] == 2
    assert runs.collapsed_check is False  # the blocking check failed...
    assert runs.collapsed_promoted is None  # ...so models/ssl_encoder did not run
    assert not runs.collapsed_success
    assert runs.pointer_after_collapse == runs.pointer_before_collapse
    assert json.loads(runs.pointer_after_collapse)["version"] == runs.second_encoder["version"]
    assert meta["version"] != runs.second_encoder["version"]


@pytest.mark.slow
def test_embeddings_add_an_ssl_kind_of_unit_128d_vectors(runs: Runs) -> None:
    n = runs.first_embed["ok_posters_in_batch"]
    assert n == 8 and runs.first_embed["processed"] == n and runs.first_embed["failed"] == 0
    assert runs.first_embed["ssl_vectors_in_batch"] == n
    assert runs.first_embed["ssl_version"].startswith("ssl:fg-crop-v2+" + runs.first_encoder["version"])
    rows = runs.store.db.query(
        "SELECT dim, embedding FROM foreground_embeddings WHERE kind = 'ssl' AND model_version = ?",
        [runs.first_embed["ssl_version"]],
    )
    assert len(rows) == n and all(dim == 128 for dim, _ in rows)
    vectors = np.asarray([e for _, e in rows], np.float32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert float(vectors.std(axis=0).mean()) > 1e-3  # posters are told apart


@pytest.mark.slow
def test_faiss_index_builds_an_ssl_index_and_search_uses_it(runs: Runs, tmp_path: Path) -> None:
    meta = runs.first_index
    assert meta["ssl_mode"] == "build" and meta["ssl_count"] == 8
    assert all(meta[f"{kind}_count"] == 8 for kind in OTHER_KINDS)
    posters = runs.store.db.query(
        "SELECT poster_id, original_path FROM raw_posters WHERE status = 'ok' ORDER BY poster_id"
    )
    # The current index is the second encoder's; search checks the query against its version.
    hits = search(query_poster_id=posters[0][0][:10], kind="ssl", k=5, store=runs.store, models=runs.models)
    assert len(hits) == 5 and posters[0][0] not in {h.poster_id for h in hits}
    assert all(-1.0 - 1e-5 <= h.score <= 1.0 + 1e-5 for h in hits)
    # An outside image goes through the same mask, crop and encoder: its own poster comes first.
    poster_id, original = posters[3]
    copy = tmp_path / "query.png"
    shutil.copyfile(runs.store.blobs.abspath(original), copy)
    hits = search(image_path=copy, kind="ssl", k=3, store=runs.store, models=runs.models)
    assert hits[0].poster_id == poster_id and hits[0].score > 0.99


@pytest.mark.slow
def test_retraining_reembeds_only_the_ssl_kind(runs: Runs) -> None:
    assert all(kinds == ["ssl"] for kinds in runs.todo_after_retrain.values())
    second = runs.second_embed
    assert second["ssl_version"] != runs.first_embed["ssl_version"]
    assert second["processed"] == 8 and second["failed"] == 0 and second["ssl_vectors_in_batch"] == 8
    for kind in OTHER_KINDS:
        assert second[f"{kind}_version"] == runs.first_embed[f"{kind}_version"]
        assert second[f"{kind}_vectors_in_batch"] == runs.first_embed[f"{kind}_vectors_in_batch"] == 8
    # The other kinds' rows are the very same rows: none added, none rewritten.
    assert runs.other_rows_after == runs.other_rows_before
    # Old ssl vectors stay (for comparison, until gc) beside the new ones.
    counts = dict(
        runs.store.db.query(
            "SELECT model_version, count(*) FROM foreground_embeddings WHERE kind = 'ssl' GROUP BY ALL"
        )
    )
    assert counts == {runs.first_embed["ssl_version"]: 8, second["ssl_version"]: 8}
    index = runs.second_index
    assert index["ssl_mode"] == "build" and "model version changed" in index["ssl_reason"]
    assert all(index[f"{kind}_mode"] == "unchanged" for kind in OTHER_KINDS)


def test_search_kinds_and_pointer_without_an_encoder(tmp_path: Path) -> None:
    assert (*OTHER_KINDS, SSL_KIND) == ALL_KINDS  # what `poster-assets search --kind` offers
    assert current_encoder(tmp_path) is None
    assert SSL_KIND not in kind_versions("eff", "fg")
    assert kind_versions("eff", "fg", "ssl-encoder@abc")[SSL_KIND] == "ssl:fg-crop-v2+ssl-encoder@abc+mask:fg"
    # A pointer to an IR that is gone means no encoder, not an error in every embedding run.
    promote(tmp_path, tmp_path / "ssl" / "x" / "model.xml", "v", "d", tmp_path / "c.pt")
    assert (ssl_dir(tmp_path) / POINTER).is_file()
    assert current_encoder(tmp_path) is None


@pytest.mark.slow
def test_search_quality_scores_the_ssl_kind_too(runs: Runs) -> None:
    from poster_assets.search.evaluate import evaluate_retrieval

    result = evaluate_retrieval(runs.store, runs.models, k=3, duplicates=3)
    by_kind = {q.kind: q for q in result.kinds}
    assert set(by_kind) == {*OTHER_KINDS, "ssl"}
    ssl = by_kind["ssl"]
    assert ssl.posters == 8 and 0.0 <= ssl.near_duplicate["all"] <= 1.0
