"""The dbt project in ``dbt/``, its manifest (which the dbt assets need before they load) and
where dbt writes.

Nothing the product writes at run time goes into the source tree: each ``dbt build`` gets its
own target folder, with its logs, under ``<home>/dbt/target/`` (``run_target_dir``). The
manifest is a build artifact: it lives in ``dbt/target`` when this process may write there (a
checkout, ``make install``), else in ``<home>/dbt/manifest-<hash of the project's path>/``, so an
install the user cannot write to still works (``manifest_target``).

``dbt/target`` is not committed, so a fresh clone has no manifest. ``dagster dev`` (``make ui``)
parses the project on load when it changed; the CLI and the tests call ``prepare_manifest``
before they load the definitions.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from poster_assets import settings

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt"
_PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")
_OWN_TARGET = Path("target")


def _writable(folder: Path) -> bool:
    """Whether this process may create files in ``folder``, or create it."""
    while not folder.exists():
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


def manifest_target(project_dir: Path = DBT_PROJECT_DIR, home: Path | None = None) -> Path:
    """The target folder the manifest is prepared in and loaded from: the project's own
    ``target`` (relative, as dbt has it) when writable, else a folder under the home."""
    if _writable(project_dir / _OWN_TARGET):
        return _OWN_TARGET
    key = hashlib.sha256(str(project_dir.resolve()).encode()).hexdigest()[:12]
    return (home or settings.home_dir()) / "dbt" / f"manifest-{key}"


def run_target_dir(home: Path) -> Path:
    """Where each ``dbt build`` gets its own target folder (artifacts and ``dbt.log``)."""
    return home / "dbt" / "target"


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


poster_dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, target_path=manifest_target())


def prepare_manifest() -> Path:
    """Parse the project (``dbt parse``: seconds, no database, no network) unless its manifest
    is current; dagster-dbt's preparer guards against two processes parsing at once."""
    if manifest_is_stale(poster_dbt_project):
        poster_dbt_project.preparer.prepare(poster_dbt_project)
    return poster_dbt_project.manifest_path


# Under `dagster dev` (`make ui`) the project is parsed on load when it changed. Not dagster-dbt's
# `prepare_if_dev`: it parses unconditionally, in the code server and again in every run's
# process, which inherits the variable (seconds of `dbt parse` before each run starts).
if os.getenv("DAGSTER_IS_DEV_CLI"):
    prepare_manifest()
