"""What the UI shows of foreground_embeddings and faiss_index after a re-run with nothing to do,
and the neighbours picture of faiss_index (real OpenVINO, FAISS and DuckDB; see _pipeline)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image

from poster_assets.defs.search.assets import _neighbour_rows
from poster_assets.extract.versions import EMBEDDING_KINDS, current_versions
from poster_assets.search.sync import sync_index
from poster_assets_tests.search import _pipeline as P

# Runs EfficientNet-Lite0 on OpenVINO.
pytestmark = pytest.mark.slow

N = P.N_POSTERS


def _picture(markdown: str) -> Image.Image:
    data = markdown.split("base64,", 1)[1].rstrip(")")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_reruns_show_the_partition_and_the_corpus_as_they_are(tmp_path: Path) -> None:
    store = P.copy_home(tmp_path / "home")
    built = P.built()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home" / "dagster")) as instance:
        P.register_batches(store, instance)
        again = P.materialization(P.materialize_batch(store, instance, built.batch), "foreground_embeddings")
        index = P.materialization(P.materialize_index(store, instance), "faiss_index")

    first = built.embeddings_meta
    assert (again["processed"], again["already_current"]) == (0, N)
    for key in (
        "ok_posters_in_batch",
        "with_current_value",
        "failed",
        "pending",
        "dagster/row_count",
        "preview",
    ):
        assert again[key] == first[key], key
    for kind in EMBEDDING_KINDS:
        assert again[f"{kind}_vectors_in_batch"] == N
    # One vector per poster and current kind: the partition's rows in the table.
    assert again["dagster/row_count"] == len(EMBEDDING_KINDS) * N
    assert "data:image/jpeg;base64," in again["preview"]

    # faiss_index: nothing new, so every index is unchanged, and the table and picture are the same.
    assert all(index[f"{kind}_mode"] == "unchanged" for kind in EMBEDDING_KINDS)
    (rows,) = store.db.query("SELECT count(*) FROM poster_neighbors")[0]
    assert index["dagster/row_count"] == built.index_meta["dagster/row_count"] == rows
    assert index["preview"] == built.index_meta["preview"]


def test_the_index_picture_is_the_newest_posters_and_their_neighbours(tmp_path: Path) -> None:
    meta = P.built().index_meta
    assert list(meta)[0] == "preview"
    picture = _picture(meta["preview"])
    assert picture.width == 6 * 140  # a query and its five nearest neighbours per row

    store = P.copy_home(tmp_path / "home")
    version = current_versions(P.models_for(store.home_path)).kinds["foreground"]
    update = sync_index(store, "foreground", version)
    rows = _neighbour_rows(store, update)
    assert len(rows) == 3
    for query, *neighbours in rows:
        assert query.score == 1.0 and query.thumbnail_path is not None
        # The same neighbours, in the same order and with the same scores, as poster_neighbors.
        stored = store.db.query(
            "SELECT neighbor_id, score FROM poster_neighbors WHERE kind = 'foreground' AND poster_id = ? "
            "ORDER BY rank LIMIT 5",
            [query.poster_id],
        )
        assert [h.poster_id for h in neighbours] == [pid for pid, _ in stored]
        assert [h.score for h in neighbours] == pytest.approx([s for _, s in stored], abs=1e-5)
        assert all(h.thumbnail_path is not None and h.file_name for h in neighbours)
