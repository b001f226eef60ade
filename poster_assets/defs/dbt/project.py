"""The dbt project in ``dbt/`` and its manifest, which definitions need before they load.

``dbt/target`` is not committed, so a fresh clone has no manifest; it is made here with
``dbt parse`` (a few seconds, no database connection, no network) when it is missing or older than
any file of the project, under a file lock so parallel processes parse once.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from filelock import FileLock

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt"
_PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")
_PARSE_LOCK_TIMEOUT_S = 300


def dbt_executable() -> str:
    """The venv's own ``dbt``: the venv's bin folder is often not on PATH (``.venv/bin/poster-assets``)."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def _newest_project_file(project_dir: Path) -> float:
    newest = 0.0
    for name in _PROJECT_FILES:
        path = project_dir / name
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())
        newest = max([newest, *(f.stat().st_mtime for f in files)])
    return newest


def manifest_is_stale(project: DbtProject) -> bool:
    path = project.manifest_path
    return not path.exists() or path.stat().st_mtime < _newest_project_file(Path(project.project_dir))


def ensure_manifest(project: DbtProject) -> Path:
    """Parse the project unless its manifest is current; returns the manifest's path."""
    if not manifest_is_stale(project):
        return project.manifest_path
    project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(project.manifest_path.with_suffix(".lock")), timeout=_PARSE_LOCK_TIMEOUT_S):
        if manifest_is_stale(project):  # another process may have parsed while we waited
            DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
                ["parse", "--quiet"], target_path=project.target_path
            ).wait()
    return project.manifest_path


poster_dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR)
ensure_manifest(poster_dbt_project)
