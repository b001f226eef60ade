"""Search for people: the Python API, the HTML contact sheet, retrieval quality and the CLI, on a
copy of the corpus the search asset tests build (real FAISS, OpenVINO, DuckDB)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from poster_assets.cli import main
from poster_assets.defs.resources import PosterStore
from poster_assets.extract.versions import EMBEDDING_KINDS
from poster_assets.search import html
from poster_assets.search.api import SearchError, SearchHit, search
from poster_assets.search.evaluate import evaluate_retrieval
from poster_assets.storage.store import Store
from poster_assets_tests.search import _pipeline as P

# Runs EfficientNet-Lite0 on OpenVINO.
pytestmark = pytest.mark.slow

N = P.N_POSTERS


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> PosterStore:
    return P.copy_home(tmp_path_factory.mktemp("api") / "home")


@pytest.fixture
def models(store: PosterStore):
    return P.models_for(store.home_path)


def _posters(store: PosterStore) -> list[tuple[str, str, str]]:
    return store.db.query(
        "SELECT poster_id, original_path, title FROM raw_posters WHERE status = 'ok' ORDER BY file_name"
    )


def _recompressed(store: PosterStore, original_path: str, dest: Path) -> Path:
    with Image.open(store.blobs.abspath(original_path)) as im:
        im.convert("RGB").save(dest, format="JPEG", quality=60)
    return dest


def test_a_posters_recompressed_copy_finds_that_poster_first(store, models, tmp_path: Path) -> None:
    posters = _posters(store)
    for i, kind in enumerate(EMBEDDING_KINDS):
        poster_id, original, title = posters[i]
        query = _recompressed(store, original, tmp_path / f"copy_{kind}.jpg")
        hits = search(image_path=query, kind=kind, k=3, store=store, models=models)
        assert len(hits) == 3 and isinstance(hits[0], SearchHit)
        assert hits[0].poster_id == poster_id, kind
        assert hits[0].score > 0.9 and hits[0].score > hits[1].score, kind
        assert hits[0].match == "near-duplicate" and [h.match for h in hits[1:]] == ["similar"] * 2, kind
        assert hits[0].title == title and hits[0].genres and hits[0].thumbnail_path.is_file()


def test_a_query_by_poster_id_leaves_the_poster_out_and_agrees_with_poster_neighbors(store) -> None:
    poster_id = _posters(store)[0][0]
    hits = search(query_poster_id=poster_id[:10], kind="poster", k=10, store=store)
    assert [h.poster_id for h in hits if h.poster_id == poster_id] == []
    assert len(hits) == N - 1  # every other poster, since k exceeds them
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    table = store.db.query(
        "SELECT neighbor_id, score FROM poster_neighbors WHERE poster_id = ? AND kind = 'poster' "
        "ORDER BY rank",
        [poster_id],
    )
    assert [h.poster_id for h in hits] == [t[0] for t in table]
    np.testing.assert_allclose(scores, [t[1] for t in table], atol=1e-5)
    # The index on disk answers what the table (written from the index in memory) says.
    assert search(query_poster_id=poster_id, kind="poster", k=2, store=store) == hits[:2]

    with pytest.raises(SearchError, match="no ingested poster with id"):
        search(query_poster_id="0123456789abcdef", store=store)
    with pytest.raises(SearchError, match="too short"):
        search(query_poster_id="ab", store=store)
    with pytest.raises(SearchError, match="unknown embedding kind"):
        search(query_poster_id=poster_id, kind="colour", store=store)


def test_a_query_image_that_cannot_be_decoded_is_a_clear_error(store, models, tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a poster")
    with pytest.raises(
        SearchError, match=r"cannot use .*notes\.jpg as a query image: not a recognised image"
    ):
        search(image_path=bad, store=store, models=models)
    truncated = tmp_path / "truncated.jpg"
    buf = io.BytesIO()
    Image.new("RGB", (300, 400), (200, 30, 30)).save(buf, format="JPEG")
    truncated.write_bytes(buf.getvalue()[:200])
    with pytest.raises(SearchError, match="as a query image"):
        search(image_path=truncated, store=store, models=models)
    with pytest.raises(SearchError, match="cannot read"):
        search(image_path=tmp_path / "missing.png", store=store, models=models)


def test_the_contact_sheet_is_one_self_contained_page(store, tmp_path: Path) -> None:
    poster_id = _posters(store)[1][0]
    hits = search(query_poster_id=poster_id, kind="foreground", k=4, store=store)
    out = html.write(tmp_path / "sheet" / "hits.html", hits, "Posters like <this>", "foreground", None)
    page = out.read_text(encoding="utf-8")
    assert page.count("data:image/jpeg;base64,") == 4
    assert "Posters like &lt;this&gt;" in page  # escaped
    for hit in hits:
        assert f"{hit.score:.3f}" in page and hit.poster_id[:16] in page
    assert 'src="http' not in page and 'src="/' not in page  # nothing outside the page


def test_retrieval_quality_scores_every_kind(store, models) -> None:
    result = evaluate_retrieval(store, models=models, k=3, duplicates=2)
    assert [q.kind for q in result.kinds] == list(EMBEDDING_KINDS)
    assert result.duplicates_tested == 2 and result.posters_with_genres == N
    for q in result.kinds:
        assert q.posters == N and 0.0 <= q.genre_precision <= 1.0
        assert set(q.near_duplicate) == {"resized", "jpeg", "cropped", "all"}
    pixels = result.kinds[-1]
    assert pixels.near_duplicate["jpeg"] == 1.0 and pixels.near_duplicate["resized"] == 1.0
    columns, rows = result.table()
    assert columns[:4] == ["kind", "posters", "genre P@3", "vs pixels"] and len(rows) == 3


def test_cli_search_and_search_quality(store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTER_ASSETS_HOME", str(store.home_path))
    runner = CliRunner()
    poster_id, original, title = _posters(store)[2]

    out = runner.invoke(main, ["search", "--poster-id", poster_id[:12], "--kind", "pixels", "--k", "3"])
    assert out.exit_code == 0, out.output
    assert "(3 rows)" in out.output and "not listed" in out.output and poster_id[:12] not in out.output

    query = _recompressed(store, original, tmp_path / "q.jpg")
    sheet = tmp_path / "q.html"
    out = runner.invoke(
        main,
        [
            "search",
            "--image",
            str(query),
            "--kind",
            "pixels",
            "--k",
            "2",
            "--format",
            "json",
            "--html",
            str(sheet),
        ],
    )
    assert out.exit_code == 0, out.output
    hits = json.loads(out.stdout)
    assert hits[0]["poster_id"] == poster_id and hits[0]["title"] == title and hits[0]["rank"] == 1
    assert hits[0]["match"] == "near-duplicate" and hits[0]["duplicate_similarity"] > 0.98
    assert sheet.read_text(encoding="utf-8").count("data:image/jpeg;base64,") == 3  # query + 2 hits

    out = runner.invoke(main, ["search", "--kind", "poster"])
    assert out.exit_code != 0 and "exactly one of --poster-id or --image" in out.output

    out = runner.invoke(main, ["search-quality", "--k", "3", "--duplicates", "1"])
    assert out.exit_code == 0, out.output
    assert "genre P@3" in out.output and "dup@1 jpeg" in out.output and "(3 rows)" in out.output


def test_a_missing_index_is_a_clear_error_telling_what_to_run(store, tmp_path: Path) -> None:
    # Last in this module: it removes the indexes of the shared copy. The embeddings are there,
    # so rebuilding the index from them is what to run (test_search_assets runs the advice).
    poster_id = _posters(store)[0][0]
    shutil.rmtree(store.home_path / "indexes" / "poster")
    with pytest.raises(SearchError, match=r"poster index .* is missing .*run `poster-assets rebuild-index`"):
        search(query_poster_id=poster_id, kind="poster", store=store)
    assert search(query_poster_id=poster_id, kind="pixels", k=1, store=store)  # others still answer

    out = CliRunner().invoke(
        main,
        ["search", "--poster-id", poster_id, "--kind", "poster"],
        env={"POSTER_ASSETS_HOME": str(store.home_path)},
    )
    assert out.exit_code == 1 and "poster-assets rebuild-index" in out.output

    # Nothing ingested at all: ingest and run build it.
    empty = Store.at(tmp_path / "empty")
    with pytest.raises(SearchError, match=r"no foreground index .*`poster-assets run` .*ingest"):
        search(query_poster_id=poster_id, kind="foreground", store=empty)
