"""What `search --image` accepts as a query file: a regular file only, refused before it is read
(no models or index needed: the file is checked first)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from poster_assets.cli import main
from poster_assets.search.api import SearchError, read_query_file, search
from poster_assets.search.index import build_index, choose_index_spec
from poster_assets.search.sync import index_dir
from poster_assets.storage.store import Store

_PATIENCE_S = 10


def _finishes(fn: Callable[[], object], fifo: Path) -> tuple[bool, dict]:
    """Run ``fn`` in a thread; whether it finished within the patience, and its outcome. A call
    still blocked on opening the FIFO is released by opening it for writing, so a failing test
    does not hang the run."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(_PATIENCE_S)
    hung = thread.is_alive()
    if hung:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the reader sees end of file
        thread.join(_PATIENCE_S)
    return not hung, outcome


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "poster.jpg"
    os.mkfifo(path)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with a saved foreground index (of made-up vectors), so that search gets as far
    as reading the query file."""
    home = tmp_path / "home"
    vectors = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    ids = [hashlib.sha256(bytes([i])).hexdigest() for i in range(5)]
    index = build_index(vectors, ids, choose_index_spec(5, 8), kind="foreground", model_version="fg@test")
    index.save(index_dir(Store.at(home), "foreground"))
    return home


def test_a_fifo_is_refused_at_once_not_waited_on(fifo: Path, home: Path, tmp_path: Path) -> None:
    store = Store.at(home)
    finished, outcome = _finishes(lambda: search(image_path=fifo, store=store), fifo)
    assert finished, "search --image on a FIFO waited for a writer"
    assert isinstance(outcome.get("error"), SearchError)
    assert "not a regular file" in str(outcome["error"]) and str(fifo) in str(outcome["error"])
    # Through a symlink too: what the link names is checked.
    link = tmp_path / "link.jpg"
    link.symlink_to(fifo)
    finished, outcome = _finishes(lambda: read_query_file(link), fifo)
    assert finished and "not a regular file" in str(outcome.get("error"))


def test_the_cli_says_why_a_fifo_cannot_be_a_query(
    fifo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTER_ASSETS_HOME", str(home))
    finished, outcome = _finishes(lambda: CliRunner().invoke(main, ["search", "--image", str(fifo)]), fifo)
    assert finished, "poster-assets search --image FIFO hung"
    out = outcome["value"]
    assert out.exit_code == 1
    assert "cannot use" in out.output and "not a regular file" in out.output


def test_devices_and_folders_are_refused_and_a_regular_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(SearchError, match="not a regular file"):
        read_query_file(Path("/dev/null"))  # a character device (/dev/zero would never end)
    with pytest.raises(SearchError, match="is a directory"):
        read_query_file(tmp_path)
    with pytest.raises(SearchError, match="cannot read .*missing.png"):
        read_query_file(tmp_path / "missing.png")

    buf = io.BytesIO()
    Image.new("RGB", (40, 60), (10, 200, 30)).save(buf, format="PNG")
    (tmp_path / "q.png").write_bytes(buf.getvalue())
    query = read_query_file(tmp_path / "q.png")
    assert query.rgb.shape == (60, 40, 3) and query.rgb.dtype == np.uint8
    assert query.sha256 == hashlib.sha256(buf.getvalue()).hexdigest()  # the id it would have if ingested
