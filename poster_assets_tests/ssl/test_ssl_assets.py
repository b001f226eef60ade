"""The trained encoder as Dagster assets: ``poster_encoder`` trains, exports and makes an encoder
current; ``foreground_embeddings`` then adds the ``ssl`` kind, ``faiss_index`` its index and
search answers ``kind="ssl"``. A re-training redoes the ssl kind and nothing else.

Runs on a private copy of the session's extracted SSL store (8 posters), with tiny training
runs (10 steps at 64 px): real torch, OpenVINO, FAISS and DuckDB throughout."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from poster_assets.cli import _SEARCH_KINDS
from poster_assets.defs.embed.assets import faiss_index, foreground_embeddings
from poster_assets.defs.embed.checks import embedding_norm_check
from poster_assets.defs.extract.resources import ModelsResource
from poster_assets.defs.ssl.assets import HEALTH_CHECK, encoder_health_check, poster_encoder
from poster_assets.extract import embed_steps
from poster_assets.search.api import search
from poster_assets.storage.resource import PosterStore
from poster_assets_tests.search import _pipeline as P

TINY = {"steps": 10, "image_size": 64, "batch_size": 8, "device": "cpu", "lr": 0.05}
OTHER_KINDS = ("foreground", "poster", "pixels")


@dataclass
class Runs:
    store: PosterStore
    models: ModelsResource
    batch: str
    first_encoder: dict  # poster_encoder metadata, seed 0
    first_check: bool
    kinds_before_training: list[str]
    first_embed: dict
    first_index: dict
    other_rows_before: list[tuple]
    todo_after_retrain: dict[str, list[str]]
    second_encoder: dict  # seed 1
    second_embed: dict
    second_index: dict
    other_rows_after: list[tuple]


def _train(store, models, instance, seed: int) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [poster_encoder, encoder_health_check],
        instance=instance,
        resources={"store": store, "models": models},
        run_config={"ops": {"poster_encoder": {"config": {**TINY, "seed": seed}}}},
    )
    assert result.success
    return result


def _embed(store, models, instance, batch: str) -> dict:
    result = dg.materialize(
        [foreground_embeddings, embedding_norm_check],
        partition_key=batch,
        instance=instance,
        resources={"store": store, "models": models},
    )
    assert result.success and P.check_passed(result, "unit_norm_and_expected_dims")
    return P.materialization(result, "foreground_embeddings")


def _index(store, models, instance) -> dict:
    result = dg.materialize([faiss_index], instance=instance, resources={"store": store, "models": models})
    assert result.success
    return P.materialization(result, "faiss_index")


def _other_rows(store: PosterStore) -> list[tuple]:
    return store.db.query(
        "SELECT poster_id, kind, model_version, embedding FROM foreground_embeddings "
        "WHERE kind <> 'ssl' ORDER BY ALL"
    )


@pytest.fixture(scope="module")
def runs(ssl_store: PosterStore, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    home = tmp_path_factory.mktemp("ssl_assets") / "home"
    shutil.copytree(ssl_store.home_path, home, ignore=shutil.ignore_patterns("dagster"))
    (home / "dagster").mkdir()
    store = PosterStore(home=str(home))
    models = ModelsResource(models_dir=str(home / "models"))
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        (batch,) = P.register_batches(store, instance)
        kinds_before = list(
            embed_steps.kind_versions("fg", embed_steps.ssl_version(models.path))
        )  # no encoder yet
        first = _train(store, models, instance, seed=0)
        first_embed = _embed(store, models, instance, batch)
        first_index = _index(store, models, instance)
        other_before = _other_rows(store)
        second = _train(store, models, instance, seed=1)
        ids = [r[0] for r in store.db.query("SELECT poster_id FROM raw_posters WHERE status = 'ok'")]
        fg_version = models.foreground().version
        todo = embed_steps.missing_kinds(
            store.db, ids, embed_steps.kind_versions(fg_version, embed_steps.ssl_version(models.path))
        )
        second_embed = _embed(store, models, instance, batch)
        second_index = _index(store, models, instance)
    return Runs(
        store=store,
        models=models,
        batch=batch,
        first_encoder=P.materialization(first, "poster_encoder"),
        first_check=P.check_passed(first, HEALTH_CHECK),
        kinds_before_training=kinds_before,
        first_embed=first_embed,
        first_index=first_index,
        other_rows_before=other_before,
        todo_after_retrain=todo,
        second_encoder=P.materialization(second, "poster_encoder"),
        second_embed=second_embed,
        second_index=second_index,
        other_rows_after=_other_rows(store),
    )


def test_poster_encoder_trains_exports_and_becomes_current(runs: Runs) -> None:
    meta = runs.first_encoder
    assert runs.kinds_before_training == list(OTHER_KINDS)  # no ssl kind without an encoder
    assert meta["steps"] == TINY["steps"] and meta["collapsed"] is False and meta["made_current"] is True
    assert np.isfinite(meta["final_total_loss"]) and meta["embedding_std"] > 0
    assert meta["loss_curves"].startswith("![loss curves](data:image/jpeg;base64,")
    assert runs.first_check  # the blocking health check passed
    ssl = embed_steps.ssl_dir(runs.models.path)
    pointer = json.loads((ssl / embed_steps.SSL_POINTER).read_text())
    assert not Path(pointer["ir_path"]).is_absolute()  # relative: a copied home keeps working
    # A new seed gives a new encoder; the pointer names the newest, both folders are kept.
    assert runs.first_encoder["version"] != runs.second_encoder["version"] == pointer["version"]
    encoder = embed_steps.current_ssl_encoder(runs.models.path)
    assert encoder is not None and encoder.embedder().version == encoder.version
    assert encoder.checkpoint.is_file() and encoder.checkpoint.parent == encoder.ir_path.parent
    assert encoder.data_version == runs.second_encoder["data_version"] == runs.first_encoder["data_version"]
    assert len(list(ssl.glob("ssl_encoder_*/model.xml"))) == 2
    assert not list(ssl.glob(".*"))  # no temporary run folders or pointer files left behind


def test_embeddings_add_an_ssl_kind_of_unit_128d_vectors(runs: Runs) -> None:
    n = runs.first_embed["ok_posters_in_batch"]
    assert n == 8 and runs.first_embed["processed"] == n and runs.first_embed["failed"] == 0
    assert runs.first_embed["ssl_vectors_in_batch"] == n
    assert runs.first_embed["ssl_version"].startswith("ssl:fg-crop-v1+" + runs.first_encoder["version"])
    rows = runs.store.db.query(
        "SELECT dim, embedding FROM foreground_embeddings WHERE kind = 'ssl' AND model_version = ?",
        [runs.first_embed["ssl_version"]],
    )
    assert len(rows) == n and all(dim == 128 for dim, _ in rows)
    vectors = np.asarray([e for _, e in rows], np.float32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert float(vectors.std(axis=0).mean()) > 1e-3  # posters are told apart


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
    assert _SEARCH_KINDS == embed_steps.ALL_KINDS
    assert embed_steps.current_ssl_encoder(tmp_path) is None
    assert embed_steps.SSL_KIND not in embed_steps.kind_versions("fg")
    assert (
        embed_steps.kind_versions("fg", "ssl-encoder@abc")["ssl"] == "ssl:fg-crop-v1+ssl-encoder@abc+mask:fg"
    )
    # A pointer to an IR that is gone means no encoder, not an error in every embedding run.
    embed_steps.write_ssl_pointer(tmp_path, tmp_path / "ssl" / "x" / "model.xml", "v", "d", tmp_path / "c.pt")
    assert embed_steps.current_ssl_encoder(tmp_path) is None


def test_search_quality_scores_the_ssl_kind_too(runs: Runs) -> None:
    from poster_assets.search.evaluate import evaluate_retrieval

    result = evaluate_retrieval(runs.store, runs.models, k=3, duplicates=3)
    by_kind = {q.kind: q for q in result.kinds}
    assert set(by_kind) == {*OTHER_KINDS, "ssl"}
    ssl = by_kind["ssl"]
    assert ssl.posters == 8 and 0.0 <= ssl.near_duplicate["all"] <= 1.0
