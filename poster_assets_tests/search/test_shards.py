"""Sharding a kind's index by poster-id range, and rebuilding it from DuckDB without holding
every vector in RAM: real FAISS and DuckDB on small synthetic vectors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from poster_assets.embed.vectors import read_vectors
from poster_assets.search.api import search
from poster_assets.search.index import (
    MANIFEST,
    IndexSpec,
    PosterIndex,
    ScratchVectors,
    ShardedIndex,
    build_index,
    build_sharded_index,
    choose_shards,
    shard_folder,
    shard_of,
    write_manifest,
)
from poster_assets.search.sync import (
    build_shards,
    copy_vectors,
    index_dir,
    index_recall,
    sync_index,
    write_neighbors,
)
from poster_assets.storage.store import HomeStore

KIND, VERSION, DIM = "foreground", "test:v1", 32
_FLAT = IndexSpec("flat", DIM, "Flat")


def _ids(n: int, offset: int = 0) -> list[str]:
    return [hashlib.sha256(str(i + offset).encode()).hexdigest() for i in range(n)]


def _unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _home(path: Path, ids: list[str], vectors: np.ndarray) -> HomeStore:
    store = HomeStore(path)
    _insert(store, ids, vectors)
    return store


def _insert(store: HomeStore, ids: list[str], vectors: np.ndarray) -> None:
    with store.db.transaction() as conn:
        conn.executemany(
            "INSERT INTO foreground_embeddings (poster_id, kind, model_version, dim, embedding) "
            "VALUES (?, ?, ?, ?, ?)",
            [(pid, KIND, VERSION, DIM, v.tolist()) for pid, v in zip(ids, vectors, strict=True)],
        )


def _neighbors(store: HomeStore) -> list[tuple]:
    return store.db.query("SELECT poster_id, rank, neighbor_id, score FROM poster_neighbors ORDER BY ALL")


def test_shards_are_equal_id_ranges_and_small_corpora_have_one() -> None:
    ids = sorted(_ids(3000))
    shards = [shard_of(pid, 4) for pid in ids]
    assert shards == sorted(shards)  # id order is shard order: each shard is one id range
    assert all(600 < shards.count(s) < 900 for s in range(4))
    assert {shard_of(pid, 1) for pid in ids} == {0}
    assert shard_of("0" * 64, 3) == 0 and shard_of("f" * 64, 3) == 2
    assert choose_shards(200) == choose_shards(500_000) == 1 and choose_shards(1_000_000) == 2


def test_scratch_vectors_hold_rows_written_in_any_order(tmp_path: Path) -> None:
    x = _unit(50)
    scratch = ScratchVectors(50, DIM, tmp_path)
    order = np.r_[10:50, 0:10]  # two runs, the second before the first
    scratch.write(order, x[order])
    assert np.array_equal(scratch.rows(0, 50), x) and np.array_equal(scratch.rows(45, 99), x[45:])
    assert list(tmp_path.iterdir()) == []  # unnamed: nothing to clean up after a crash


def test_merged_shards_give_the_exact_top_k_of_one_index(tmp_path: Path) -> None:
    order = np.argsort(_ids(300))
    ids, x = [_ids(300)[i] for i in order], _unit(300)[order]
    queries = _unit(40, seed=1)
    one = build_index(x, ids, _FLAT)
    sharded = build_sharded_index(x, ids, 3, spec=_FLAT)
    assert [s.count for s in sharded.shards] == [sum(shard_of(p, 3) == s for p in ids) for s in range(3)]
    assert sharded.ids == ids  # shards are id ranges laid end to end
    expected_scores, expected = one.search(queries, 10)
    scores, found = sharded.search(queries, 10)
    assert found == expected
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
    _, positions = sharded.search_positions(queries, 10)
    assert [[ids[p] for p in row] for row in positions] == expected
    assert index_recall(sharded, x) == 1.0

    sharded.save(tmp_path / "idx")
    loaded = PosterIndex.load(tmp_path / "idx")  # the manifest makes it a sharded load
    assert isinstance(loaded, ShardedIndex) and loaded.ids == ids
    assert loaded.search(queries, 10)[1] == expected
    names = {p.name for p in (tmp_path / "idx").iterdir()}
    assert names == {MANIFEST, "shard-0-of-3", "shard-1-of-3", "shard-2-of-3"}


def test_readers_load_the_shard_generations_the_manifest_names(tmp_path: Path) -> None:
    ids, x = sorted(_ids(300)), _unit(300)
    build_sharded_index(x, ids, 3, spec=_FLAT).save(tmp_path)
    # A shard re-saved (another process adding to it) is not seen until the manifest names it.
    shard0 = PosterIndex.load(shard_folder(tmp_path, 0, 3))
    new = [pid for pid in _ids(400, offset=300) if shard_of(pid, 3) == 0][:5]
    shard0.add(_unit(5, seed=2), new)
    shard0.save(shard_folder(tmp_path, 0, 3))
    assert PosterIndex.load(tmp_path).count == 300
    assert json.loads((tmp_path / MANIFEST).read_text())["count"] == 300
    write_manifest(tmp_path, 3)
    assert PosterIndex.load(tmp_path).count == 305


def test_sync_builds_shards_whose_search_and_neighbours_match_one_index(tmp_path: Path) -> None:
    ids, x = _ids(300), _unit(300)
    single = _home(tmp_path / "single", ids, x)
    sharded = _home(tmp_path / "sharded", ids, x)
    one = sync_index(single, KIND, VERSION)
    three = sync_index(sharded, KIND, VERSION, shards=3)
    assert one.mode == three.mode == "build"
    assert isinstance(three.index, ShardedIndex) and not isinstance(one.index, ShardedIndex)
    assert not (index_dir(sharded, KIND) / "meta.json").exists()
    # The update's vectors are the index's rows in its order, copied from DuckDB a page at a time.
    _, stored = read_vectors(sharded, KIND, VERSION)
    assert np.array_equal(three.vectors.rows(0, 300), stored)
    assert index_recall(three.index, three.vectors) == index_recall(one.index, one.vectors) == 1.0

    assert write_neighbors(single, [one]) == write_neighbors(sharded, [three]) == 300 * 10
    a, b = _neighbors(single), _neighbors(sharded)
    assert [r[:3] for r in a] == [r[:3] for r in b]
    np.testing.assert_allclose([r[3] for r in a], [r[3] for r in b], atol=1e-6)
    for query in ids[:5]:
        expected = search(query_poster_id=query, kind=KIND, k=7, store=single)
        found = search(query_poster_id=query, kind=KIND, k=7, store=sharded)
        assert [h.poster_id for h in found] == [h.poster_id for h in expected]

    # New posters go to the shard their id falls in, without a rebuild.
    more, y = _ids(30, offset=300), _unit(30, seed=3)
    _insert(single, more, y)
    _insert(sharded, more, y)
    one, three = sync_index(single, KIND, VERSION), sync_index(sharded, KIND, VERSION, shards=3)
    assert (one.mode, one.added, three.mode, three.added) == ("add", 30, "add", 30)
    loaded = PosterIndex.load(index_dir(sharded, KIND))
    assert isinstance(loaded, ShardedIndex) and loaded.count == 330
    for s, shard in enumerate(loaded.shards):
        assert all(shard_of(pid, 3) == s for pid in shard.ids)
    assert np.array_equal(
        three.vectors.rows(0, 330),
        read_vectors(sharded, KIND, VERSION, three.index.ids)[1][np.argsort(np.argsort(three.index.ids))],
    )
    write_neighbors(single, [one])
    write_neighbors(sharded, [three])
    assert [r[:3] for r in _neighbors(single)] == [r[:3] for r in _neighbors(sharded)]
    assert sync_index(sharded, KIND, VERSION, shards=3).mode == "unchanged"

    # Back to one shard (the corpus wants one): the unsharded layout, and nothing of the shards.
    back = sync_index(sharded, KIND, VERSION)
    assert back.mode == "build" and "want 1 shard" in back.reason
    folder = index_dir(sharded, KIND)
    assert not (folder / MANIFEST).exists() and not list(folder.glob("shard-*"))
    assert not isinstance(PosterIndex.load(folder), ShardedIndex)


def test_copy_vectors_puts_rows_in_the_order_asked(tmp_path: Path) -> None:
    ids, x = _ids(120), _unit(120)
    store = _home(tmp_path / "home", ids, x)
    sorted_ids = sorted(ids)
    order = sorted_ids[60:] + sorted_ids[:60]
    copied = copy_vectors(store, KIND, VERSION, order, DIM)
    row = {pid: i for i, pid in enumerate(ids)}
    assert np.array_equal(copied.rows(0, 120), x[[row[p] for p in order]])


@pytest.mark.slow  # spawns worker processes
def test_shards_build_in_separate_processes(tmp_path: Path) -> None:
    ids, x = _ids(300), _unit(300)
    store = _home(tmp_path / "home", ids, x)
    built = build_shards(store, KIND, VERSION, 3, workers=2)
    assert [s.count for s in built.shards] == [sum(shard_of(p, 3) == s for p in ids) for s in range(3)]
    queries = _unit(20, seed=4)
    exact = build_index(x, ids, _FLAT).search(queries, 10)[1]
    assert PosterIndex.load(index_dir(store, KIND)).search(queries, 10)[1] == exact
