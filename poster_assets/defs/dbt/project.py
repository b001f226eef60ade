"""The dbt project in ``dbt/`` and its manifest, which the dbt assets need before they load.

``dbt/target`` is not committed, so a fresh clone has no manifest. ``dagster dev`` (``make ui``)
parses the project on start through ``prepare_if_dev``; the CLI and the tests call
``prepare_manifest`` before they load the definitions.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dagster_dbt import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt"
_PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")


def dbt_executable() -> str:
    """The venv's own ``dbt``: the venv's bin folder is often not on PATH (``.venv/bin/poster-assets``)."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def manifest_is_stale(project: DbtProject) -> bool:
    """No manifest, or one older than a file of the project."""
    path = project.manifest_path
    if not path.exists():
        return True
    built = path.stat().st_mtime
    roots = [Path(project.project_dir) / name for name in _PROJECT_FILES]
    files = [f for root in roots for f in ([root] if root.is_file() else root.rglob("*"))]
    return any(f.is_file() and f.stat().st_mtime > built for f in files)


poster_dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR)
poster_dbt_project.prepare_if_dev()


def prepare_manifest() -> Path:
    """Parse the project (``dbt parse``: seconds, no database, no network) unless its manifest
    is current; dagster-dbt's preparer guards against two processes parsing at once."""
    if manifest_is_stale(poster_dbt_project):
        poster_dbt_project.preparer.prepare(poster_dbt_project)
    return poster_dbt_project.manifest_path
