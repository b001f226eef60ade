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

import os
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from poster_assets.defs.dbt.inputs import DBT_PROJECT_DIR, manifest_target, project_files


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
    return any(f.stat().st_mtime > built for f in project_files(Path(project.project_dir)))


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
