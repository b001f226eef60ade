"""benchmarks/catalog_scale.py at a small n: its rows have the product's shape (every dbt test
passes on them, the marts and the README's queries see what the generator meant) and the
counts follow from its rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import catalog_scale as cs
from poster_assets.storage.store import Store

N = 2000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    home = tmp_path_factory.mktemp("catalog")
    store = Store.at(home)
    cs.generate_catalog(store.db_path, N, cs.current(), embedding_dim=16, chunk=700, rows_chunk=900)
    return store


def _one(store: Store, sql: str) -> object:
    return store.db.query(sql)[0][0]


def test_counts_follow_the_rules(store: Store) -> None:
    i = np.arange(N)
    ok = i % cs.QUARANTINED[0] != cs.QUARANTINED[1]
    ocr_ok = ok & (i % cs.OCR_FAILED[0] != cs.OCR_FAILED[1])
    statuses = dict(store.db.query("SELECT status, count(*) FROM raw_posters GROUP BY ALL"))
    assert statuses == {
        "ok": ok.sum(),
        "quarantined": N - ok.sum(),
        "duplicate": (ok & (i % cs.DUPLICATED[0] == cs.DUPLICATED[1])).sum(),
    }
    # Every ok poster: a depth map, a mask, a vector; layers only where OCR succeeded.
    for table in ("depth_maps", "foreground_masks", "foreground_embeddings"):
        assert _one(store, f"SELECT count(DISTINCT poster_id) FROM {table}") == ok.sum()
    assert _one(store, "SELECT count(DISTINCT poster_id) FROM layer_masks") == ocr_ok.sum()
    assert _one(store, "SELECT count(*) FROM layer_masks WHERE role = 'title'") == ocr_ok.sum()
    # OCR lines 3..8 at the current version, line 0 the title.
    lines = store.db.query(
        "SELECT min(n), max(n) FROM "
        "(SELECT count(*) n FROM ocr_text WHERE model_version = ? GROUP BY poster_id)",
        [cs.OCR_VERSION],
    )
    assert lines == [(3, 8)]
    # Unit vectors of the width asked for.
    norms = store.db.query(
        "SELECT DISTINCT dim, round(list_sum(list_transform(embedding, lambda x: x * x)), 4) "
        "FROM foreground_embeddings"
    )
    assert norms == [(16, 1.0)]


@pytest.mark.slow
def test_dbt_builds_and_readme_queries_run(store: Store) -> None:
    built = cs.dbt_build(store, cs.current())
    assert built["dbt_ok"], built["nodes"]
    assert all(status in {"success", "pass"} for _, status, _ in built["nodes"])
    results = cs.run_queries(store, cs.README_QUERIES)
    assert all("rows" in r for r in results.values()), results
    assert results["ssl_curriculum"]["rows"] == 20
    assert results["ocr_changed_lines"]["rows"] > 0  # the older OCR version read line 1 differently
    assert Path(built["target"]).is_relative_to(store.home_path)
