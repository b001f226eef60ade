"""Every test gets its own POSTER_ASSETS_HOME and Dagster instance: nothing leaks between tests."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from poster_assets.storage.resource import PosterStore


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("POSTER_ASSETS_HOME", str(h))
    monkeypatch.setenv("DAGSTER_HOME", str(h / "dagster"))
    (h / "dagster").mkdir()
    (h / "dagster" / "dagster.yaml").touch()
    return h


@pytest.fixture
def store(home: Path) -> PosterStore:
    return PosterStore(home=str(home))


@pytest.fixture
def instance(home: Path):
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as inst:
        yield inst
