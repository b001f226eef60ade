"""Every test gets its own POSTER_ASSETS_HOME and Dagster instance: nothing leaks between tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dagster as dg
import pytest

from poster_assets.defs.resources import PosterStore


def pytest_configure(config: pytest.Config) -> None:
    # As the CLI does: the venv's tools (dbt, dagster) first on PATH, and the dbt manifest the
    # dbt assets load at import made before any test module imports them.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    from poster_assets.defs.dbt.project import prepare_manifest

    prepare_manifest()


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
