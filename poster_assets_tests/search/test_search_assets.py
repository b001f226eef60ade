"""foreground_embeddings and faiss_index on generated posters, through Dagster's in-process
materialize: real OpenVINO, FAISS and DuckDB (see _pipeline for the shared, once-built corpus)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from poster_assets.defs.resources import PosterStore
from poster_assets.demo import generate_corpus
from poster_assets.embed.vectors import KIND_DIMS, embed_chunk, missing_kinds, read_vectors
from poster_assets.extract.runner import PosterRef
from poster_assets.extract.versions import (
    EMBEDDING_KINDS,
    current_versions,
    embeddings_version,
    kind_versions,
)
from poster_assets.search.index import PosterIndex, build_index, choose_index_spec
from poster_assets.search.sync import index_dir, sync_index, vectors_version
from poster_assets.storage.readonly_sql import run_readonly
from poster_assets_tests.search import _pipeline as P

# Runs EfficientNet-Lite0 on OpenVINO.
pytestmark = pytest.mark.slow

N = P.N_POSTERS


@pytest.fixture
def env(tmp_path: Path):
    """A private copy of the built home and a fresh Dagster instance that knows its batches."""
    store = P.copy_home(tmp_path / "home")
    with dg.instance_for_test(temp_dir=str(tmp_path / "home" / "dagster")) as instance:
        P.register_batches(store, instance)
        yield store, instance


def _versions(store: PosterStore) -> dict[str, str]:
    return current_versions(P.models_for(store.home_path)).kinds


def test_embeddings_per_kind_are_unit_vectors_and_a_rerun_does_no_work(env) -> None:
    store, instance = env
    built = P.built()
    meta = built.embeddings_meta
    assert (meta["processed"], meta["failed"]) == (N, 0)
    for kind in EMBEDDING_KINDS:
        assert meta[f"{kind}_vectors_in_batch"] == N
    assert "data:image/jpeg;base64," in meta["preview"]
    assert built.norm_check_passed

    rows = store.db.query(
        "SELECT kind, any_value(model_version), min(dim), max(dim), count(*), "
        "max(abs(sqrt(list_inner_product(embedding, embedding)) - 1)) FROM foreground_embeddings GROUP BY ALL"
    )
    by_kind = {r[0]: r[1:] for r in rows}
    assert set(by_kind) == set(EMBEDDING_KINDS)
    versions = _versions(store)
    for kind, (version, lo, hi, n, norm_err) in by_kind.items():
        assert version == versions[kind]
        assert lo == hi == KIND_DIMS[kind] and n == N and norm_err < 1e-5, kind
    # The foreground kind names the mask model it was cropped with; the others do not need to.
    assert versions["foreground"].endswith("+mask:fg:grabcut-saliency-v1")
    assert "mask:" not in versions["poster"]
    # The version known without loading the network is the embedder's own.
    models = P.models_for(store.home_path)
    assert models.efficientnet().version == models.efficientnet_version()

    # Different posters get different vectors; the foreground crop differs from the whole poster.
    _, fg = read_vectors(store, "foreground", versions["foreground"])
    ids, poster = read_vectors(store, "poster", versions["poster"])
    sims = poster @ poster.T
    assert sims[~np.eye(N, dtype=bool)].max() < 0.99
    assert np.einsum("ij,ij->i", fg, poster).min() < 0.99

    stamps = store.db.query("SELECT poster_id, extracted_at FROM extractions ORDER BY ALL")
    again = P.materialization(P.materialize_batch(store, instance, built.batch), "foreground_embeddings")
    assert (again["processed"], again["already_current"]) == (0, N)
    assert store.db.query("SELECT poster_id, extracted_at FROM extractions ORDER BY ALL") == stamps


def test_a_new_foreground_model_would_redo_only_the_foreground_kind(env) -> None:
    store, _ = env
    ids = [r[0] for r in store.db.query("SELECT poster_id FROM raw_posters WHERE status = 'ok'")]
    current = _versions(store)
    assert all(kinds == [] for kinds in missing_kinds(store, ids, current).values())
    models = P.models_for(store.home_path)
    new = kind_versions(models.efficientnet_version(), "u2netp@deadbeef")
    assert new["poster"] == current["poster"] and new["pixels"] == current["pixels"]
    assert embeddings_version(new) != embeddings_version(current)
    assert all(kinds == ["foreground"] for kinds in missing_kinds(store, ids, new).values())
    # And without masks from that model the poster fails with a reason, rather than guessing.
    refs = [
        PosterRef(*r)
        for r in store.db.query(
            "SELECT poster_id, original_path, file_name FROM raw_posters WHERE status = 'ok' LIMIT 1"
        )
    ]
    with pytest.raises(LookupError, match="no foreground mask at u2netp@deadbeef"):
        moved = dataclasses.replace(current_versions(models), foreground="u2netp@deadbeef", kinds=new)
        embed_chunk(store, refs, models, moved)


def test_index_is_built_with_recall_and_neighbors_are_queryable_in_sql(env) -> None:
    store, _ = env
    built = P.built()
    meta = built.index_meta
    for kind in EMBEDDING_KINDS:
        assert meta[f"{kind}_mode"] == "build"
        assert meta[f"{kind}_count"] == N
        assert meta[f"{kind}_index_type"] == "flat"
        assert meta[f"{kind}_recall_at_10"] == 1.0
        assert (store.home_path / "indexes" / kind / "meta.json").exists()
    assert built.recall_check_passed
    assert meta["poster_neighbors_rows"] == len(EMBEDDING_KINDS) * N * (N - 1)

    columns, rows = run_readonly(
        store.db,
        "SELECT kind, count(DISTINCT poster_id), max(rank), count(*) FILTER (poster_id = neighbor_id), "
        "bool_and(score BETWEEN -1.001 AND 1.001) FROM poster_neighbors GROUP BY ALL ORDER BY 1",
    )
    assert columns[0] == "kind"
    assert rows == [(kind, N, N - 1, 0, True) for kind in sorted(EMBEDDING_KINDS)]
    # Ranks follow the scores, and match an exact search over the stored vectors.
    versions = _versions(store)
    ids, vectors = read_vectors(store, "poster", versions["poster"])
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    for i, pid in enumerate(ids):
        got = store.db.query(
            "SELECT neighbor_id, score FROM poster_neighbors WHERE kind = 'poster' AND poster_id = ? "
            "ORDER BY rank",
            [pid],
        )
        order = np.argsort(-sims[i])[: N - 1]
        assert [g[0] for g in got] == [ids[j] for j in order]
        np.testing.assert_allclose([g[1] for g in got], sims[i][order], atol=1e-5)


def test_a_second_batch_is_added_without_rebuild_and_answers_like_a_rebuild(env, tmp_path: Path) -> None:
    store, instance = env
    more = tmp_path / "more"
    generate_corpus(more, n=3, seed=12)
    batch = P.add_batch(store, instance, more)
    P.materialize_batch(store, instance, batch)
    result = P.materialize_index(store, instance)
    meta = P.materialization(result, "faiss_index")
    for kind in EMBEDDING_KINDS:
        assert (meta[f"{kind}_mode"], meta[f"{kind}_added"], meta[f"{kind}_count"]) == ("add", 3, N + 3), kind
        assert f"{kind}_reason" not in meta
    assert P.check_passed(result, "recall_at_10_vs_exact")

    versions = _versions(store)
    for kind in EMBEDDING_KINDS:
        saved = PosterIndex.load(index_dir(store, kind))
        assert saved.model_version == versions[kind] and saved.count == N + 3
        ids, vectors = read_vectors(store, kind, versions[kind])
        rebuilt = build_index(
            vectors, ids, choose_index_spec(len(ids), vectors.shape[1]), kind, versions[kind]
        )
        s_saved, h_saved = saved.search(vectors, 5)
        s_rebuilt, h_rebuilt = rebuilt.search(vectors, 5)
        assert h_saved == h_rebuilt, kind
        np.testing.assert_allclose(s_saved, s_rebuilt, atol=1e-5)
    # Nothing new: nothing is rebuilt or even re-saved.
    meta = P.materialization(P.materialize_index(store, instance), "faiss_index")
    assert all(meta[f"{kind}_mode"] == "unchanged" for kind in EMBEDDING_KINDS)


def test_the_indexes_carry_what_they_were_made_from_and_leave_the_neighbours_when_no_vector_changed(
    env,
) -> None:
    store, instance = env
    versions = _versions(store)
    made_from = vectors_version(store, versions)
    assert vectors_version(store, dict(reversed(versions.items()))) == made_from
    neighbours = store.db.query("SELECT * FROM poster_neighbors ORDER BY ALL")

    # The copied home's indexes and neighbours hold its vectors already.
    result = P.materialize_index(store, instance)
    (materialization,) = result.asset_materializations_for_node("faiss_index")
    assert materialization.tags[DATA_VERSION_TAG] == made_from
    meta = P.materialization(result, "faiss_index")
    assert meta["neighbors"] == "unchanged" and meta["poster_neighbors_rows"] == len(neighbours) > 0
    assert all(meta[f"{kind}_mode"] == "unchanged" for kind in versions)
    assert store.db.query("SELECT * FROM poster_neighbors ORDER BY ALL") == neighbours

    # A poster's vectors gone (as `batches abandon` leaves it): another data version, and
    # indexes and neighbours without it.
    gone = min(r[0] for r in neighbours)
    with store.db.transaction() as conn:
        conn.execute("DELETE FROM foreground_embeddings WHERE poster_id = ?", [gone])
    result = P.materialize_index(store, instance)
    (materialization,) = result.asset_materializations_for_node("faiss_index")
    assert materialization.tags[DATA_VERSION_TAG] == vectors_version(store, versions) != made_from
    meta = P.materialization(result, "faiss_index")
    assert meta["neighbors"] == "rewritten" and all(meta[f"{kind}_count"] == N - 1 for kind in versions)
    assert not store.db.query("SELECT 1 FROM poster_neighbors WHERE ? IN (poster_id, neighbor_id)", [gone])


def test_a_corrupt_index_is_rebuilt_by_the_next_materialization(env) -> None:
    store, instance = env
    folder = index_dir(store, "foreground")
    (data,) = [p for p in folder.glob("data-*")]
    index_file = data / "index.faiss"
    blob = bytearray(index_file.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    index_file.write_bytes(bytes(blob))

    result = P.materialize_index(store, instance)
    meta = P.materialization(result, "faiss_index")
    assert meta["foreground_mode"] == "build"
    assert "unreadable" in meta["foreground_reason"] and "checksum" in meta["foreground_reason"]
    assert meta["poster_mode"] == meta["pixels_mode"] == "unchanged"
    assert P.check_passed(result, "recall_at_10_vs_exact")
    assert PosterIndex.load(folder).count == N

    # A model version the saved index was not built with also means a rebuild, and says why.
    update = sync_index(store, "foreground", "foreground:other-version")
    assert update.mode == "empty" and PosterIndex.load(folder).count == N  # no vectors: left alone
    versions = _versions(store)
    store_version = versions["poster"]
    # (the pixels index, saved where the poster index belongs)
    shutil.rmtree(index_dir(store, "poster"))
    shutil.copytree(index_dir(store, "pixels"), index_dir(store, "poster"))
    update = sync_index(store, "poster", store_version)
    assert update.mode == "build" and "model version changed" in update.reason


def test_the_weights_are_a_source_asset_and_the_jobs_run_embeddings_and_indexes(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from poster_assets.definitions import defs

    store, instance = env
    monkeypatch.setenv("POSTER_ASSETS_HOME", str(store.home_path))
    observed = defs.resolve_job_def("observe_models_job").execute_in_process(instance=instance)
    assert observed.success
    tags = {
        e.asset_observation_data.asset_observation.asset_key.to_user_string(): (
            e.asset_observation_data.asset_observation.tags
        )
        for e in observed.get_asset_observation_events()
    }
    expected = P.models_for(store.home_path).efficientnet_version()
    assert tags["models/efficientnet_lite0"]["dagster/data_version"] == expected

    graph = defs.resolve_asset_graph()
    parents = graph.get(dg.AssetKey("foreground_embeddings")).parent_keys
    assert {dg.AssetKey(["models", "efficientnet_lite0"]), dg.AssetKey("foreground_masks")} <= parents
    assert (
        dg.AssetKey("foreground_embeddings")
        in defs.resolve_job_def("batch_job").asset_layer.executable_asset_keys
    )
    assert dg.AssetKey("faiss_index") in defs.resolve_job_def("corpus_job").asset_layer.executable_asset_keys


def test_a_garbage_meta_json_is_rebuilt_by_the_next_materialization(env) -> None:
    # `poster-assets run --all` failed every time here: the save of the rebuilt index read the
    # garbage meta.json first.
    store, instance = env
    folder = index_dir(store, "poster")
    (folder / "meta.json").write_bytes(b"\x00garbage\xff" * 50)
    result = P.materialize_index(store, instance)
    meta = P.materialization(result, "faiss_index")
    assert meta["poster_mode"] == "build" and "unreadable" in meta["poster_reason"]
    assert meta["foreground_mode"] == meta["pixels_mode"] == "unchanged"
    assert P.check_passed(result, "recall_at_10_vs_exact")
    assert PosterIndex.load(folder).count == N


def _as_if_run_before(instance: dg.DagsterInstance, store: PosterStore, batches: list[str]) -> None:
    """Record every batch and corpus asset as materialized, parents first, as a finished
    `poster-assets run` leaves the instance: nothing is missing, and each corpus asset carries the
    data version of what it was made from (the vectors, the dbt inputs), so nothing is behind."""
    from dagster._core.definitions.data_version import DATA_VERSION_TAG

    from poster_assets.cli import runs
    from poster_assets.defs.dbt.inputs import inputs_version, load_manifest
    from poster_assets.search.sync import vectors_version

    current = current_versions(P.models_for(store.home_path))
    made_from = {runs.FAISS_INDEX: vectors_version(store, current.kinds)}
    dbt_inputs = inputs_version(store.db, current.by_asset(), load_manifest())
    defs = runs.definitions()
    batch_keys = defs.resolve_job_def("batch_job").asset_layer.executable_asset_keys
    corpus_keys = defs.resolve_job_def("corpus_job").asset_layer.executable_asset_keys
    for key in defs.resolve_asset_graph().toposorted_asset_keys:
        if key in batch_keys:
            for batch in batches:
                instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=batch))
        elif key in corpus_keys:
            stamp = {DATA_VERSION_TAG: made_from.get(key, dbt_inputs)}
            instance.report_runless_asset_event(dg.AssetMaterialization(key, tags=stamp))


def test_a_damaged_index_file_is_repaired_by_the_command_its_search_error_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re
    import shlex

    from click.testing import CliRunner

    from poster_assets.cli import main, runs
    from poster_assets.search.api import SearchError, search

    store = P.copy_home(tmp_path / "home")
    monkeypatch.setenv("POSTER_ASSETS_HOME", str(store.home_path))
    monkeypatch.setenv("DAGSTER_HOME", str(store.home_path / "dagster"))
    _as_if_run_before(runs.instance(), store, P.register_batches(store, runs.instance()))
    poster_id = store.db.query("SELECT min(poster_id) FROM raw_posters")[0][0]

    (data,) = index_dir(store, "foreground").glob("data-*")
    index_file = data / "index.faiss"
    index_file.write_bytes(index_file.read_bytes()[: index_file.stat().st_size // 2])  # truncated
    with pytest.raises(SearchError) as err:
        search(query_poster_id=poster_id, kind="foreground", store=store)

    # `poster-assets run` has nothing to do: the batches and the index were all materialized.
    out = CliRunner().invoke(main, ["run"])
    assert out.exit_code == 0, out.output
    with pytest.raises(SearchError):
        search(query_poster_id=poster_id, kind="foreground", store=store)

    # What the error says to run repairs it.
    command = re.search(r"`(poster-assets [^`]+)`", str(err.value)).group(1)
    out = CliRunner().invoke(main, shlex.split(command)[1:])
    assert out.exit_code == 0, out.output
    hits = search(query_poster_id=poster_id, kind="foreground", store=store)
    assert len(hits) == N - 1 and poster_id not in {h.poster_id for h in hits}
    assert "is damaged" in str(err.value) and command == "poster-assets rebuild-index"
    assert re.search(r"foreground\s+build\s+6\s+saved index unreadable", out.output), out.output

    # A deleted index: the same advice, and it works too.
    shutil.rmtree(index_dir(store, "pixels"))
    with pytest.raises(SearchError, match=r"pixels index .* is missing.*`poster-assets rebuild-index`"):
        search(query_poster_id=poster_id, kind="pixels", store=store)
    # --kind rebuilds an index that reads fine as well; the others only get what they lack.
    out = CliRunner().invoke(main, ["rebuild-index", "--kind", "poster"])
    assert out.exit_code == 0, out.output
    assert re.search(r"poster\s+build\s+6\s+a rebuild was requested", out.output), out.output
    assert re.search(r"pixels\s+build", out.output) and re.search(r"foreground\s+unchanged", out.output)
    assert not list(index_dir(store, "poster").glob("rebuild-requested"))
    assert len(search(query_poster_id=poster_id, kind="pixels", store=store)) == N - 1
