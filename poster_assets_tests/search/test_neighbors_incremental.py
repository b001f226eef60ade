"""``poster_neighbors`` after new posters: updated in place (the fresh posters' lists, and the
older lists they enter) with the same rows a whole rewrite gives. Real FAISS and DuckDB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poster_assets.search.sync import refresh_neighbors, sync_index, write_neighbors
from poster_assets_tests.search.test_shards import KIND, VERSION, _home, _ids, _insert, _neighbors, _unit


def _assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert [r[:3] for r in a] == [r[:3] for r in b]
    np.testing.assert_allclose([r[3] for r in a], [r[3] for r in b], atol=1e-5)


@pytest.mark.parametrize(("before", "shards"), [(300, 1), (300, 3), (5, 1)])
def test_new_posters_update_the_table_as_a_rewrite_would(tmp_path: Path, before: int, shards: int) -> None:
    ids, x = _ids(before), _unit(before)
    store = _home(tmp_path / "incremental", ids, x)
    first = sync_index(store, KIND, VERSION, shards=shards)
    assert refresh_neighbors(store, [first]) == "rewritten"
    assert refresh_neighbors(store, [sync_index(store, KIND, VERSION, shards=shards)]) == "unchanged"

    # Near-copies of older posters (they must enter those posters' lists) and unrelated ones.
    rng = np.random.default_rng(7)
    near = x[:4] + 0.05 * rng.standard_normal((4, x.shape[1])).astype(np.float32)
    fresh = np.vstack([near / np.linalg.norm(near, axis=1, keepdims=True), _unit(3, seed=9)])
    more = _ids(len(fresh), offset=10_000)
    _insert(store, more, fresh)
    update = sync_index(store, KIND, VERSION, shards=shards)
    assert update.mode == "add" and sorted(update.fresh) == sorted(more)
    changed_before = {r[0]: r for r in _neighbors(store)}
    assert refresh_neighbors(store, [update]) == "added"

    # The same posters written whole from one index built at once.
    whole = _home(tmp_path / "whole", ids + more, np.vstack([x, fresh]))
    write_neighbors(whole, [sync_index(whole, KIND, VERSION, shards=shards)])
    _assert_same(_neighbors(store), _neighbors(whole))
    entered = {r[0] for r in _neighbors(store) if r[2] in more and r[0] not in more}
    assert set(ids[:4]) <= entered  # each near-copy is in its original's list
    assert changed_before  # there was a table to update, not one written from nothing


def test_a_table_out_of_step_is_rewritten_whole(tmp_path: Path) -> None:
    ids, x = _ids(50), _unit(50)
    store = _home(tmp_path / "home", ids, x)
    refresh_neighbors(store, [sync_index(store, KIND, VERSION)])
    with store.db.transaction() as conn:  # rows lost, say by an interrupted write long ago
        conn.execute("DELETE FROM poster_neighbors WHERE rank = 10")
    _insert(store, _ids(2, offset=500), _unit(2, seed=4))
    update = sync_index(store, KIND, VERSION)
    assert update.mode == "add"
    assert refresh_neighbors(store, [update]) == "rewritten"
    assert store.db.query("SELECT count(*) FROM poster_neighbors")[0][0] == 52 * 10
