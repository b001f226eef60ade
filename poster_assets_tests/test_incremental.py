"""The README's incremental flow through the CLI, with the real models: new posters reach every
asset downstream (indexes, neighbours, marts) and are found by search; a re-run with nothing
new does nothing."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from poster_assets.cli import main
from poster_assets.demo import generate_corpus
from poster_assets.search.api import search
from poster_assets.search.index import PosterIndex
from poster_assets.search.sync import index_dir
from poster_assets.storage.store import Store

pytestmark = pytest.mark.slow


def _cli(*args: str) -> str:
    out = CliRunner().invoke(main, list(args))
    assert out.exit_code == 0, out.output
    return out.output


def _ids(store: Store, folder: Path) -> set[str]:
    rows = store.db.query(
        "SELECT poster_id FROM raw_posters WHERE status = 'ok' AND starts_with(source_uri, ?)", [str(folder)]
    )
    return {r[0] for r in rows}


@pytest.mark.parametrize("extract", [True, False], ids=["ingest --extract", "ingest then run"])
def test_new_posters_reach_indexes_marts_and_search(tmp_path: Path, home: Path, extract: bool) -> None:
    first, later = tmp_path / "first", tmp_path / "later"
    generate_corpus(first, n=3, seed=21)
    generate_corpus(later, n=2, seed=22)
    store = Store.at(home)
    _cli("ingest", str(first), "--extract")
    _cli("run")

    _cli("ingest", str(later), *(["--extract"] if extract else []))
    out = _cli("run")
    if extract:  # --extract already brought everything up to date
        assert "0 run(s)" in out, out
    new = _ids(store, later)
    assert len(new) == 2
    for kind in ("foreground", "poster", "pixels"):
        assert new <= set(PosterIndex.load(index_dir(store, kind)).ids), kind
    neighbours = store.db.query(
        "SELECT DISTINCT poster_id FROM poster_neighbors WHERE poster_id IN ?", [list(new)]
    )
    assert len(neighbours) == 2
    marts = store.db.query("SELECT poster_id FROM marts.poster_annotations WHERE poster_id IN ?", [list(new)])
    assert len(marts) == 2
    original = next(iter(sorted(later.glob("*.jpg")) + sorted(later.glob("*.png"))))
    hits = search(image_path=original, kind="poster", k=1, store=store)
    assert hits[0].poster_id in new

    # Nothing new: nothing runs, the corpus included.
    assert "0 run(s)" in _cli("run")
