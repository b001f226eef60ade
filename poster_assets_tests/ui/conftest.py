"""One UI for the UI tests: ``make ui`` over a small home made by ``poster-assets demo``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from poster_assets_tests.ui.server import UI, poster_assets, started_ui

DEMO_POSTERS = 6


@pytest.fixture(scope="session")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    home = tmp_path_factory.mktemp("ui") / "home"
    poster_assets(home, "demo", "--n", str(DEMO_POSTERS))
    with started_ui(home) as started:
        print(f"\nmake ui: code location loaded in {started.seconds_to_load:.1f} s")
        yield started
