"""Execute a job in this process as a run of the UI's code location.

``JobDefinition.execute_in_process`` makes runs without a code-location origin: the UI lists
them under Runs but not on the job's page or the Overview timeline, which filter by the
repository label (``__repository__@poster_assets``). Runs made here carry the origin of the
location ``workspace.yaml`` declares, so a run started by ``poster-assets run`` is a run of
``batch_job`` like one launched from the UI, and can be re-executed from there.
"""

from __future__ import annotations

import functools
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.execution.api import create_execution_plan, execute_run
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

# The repository root, where workspace.yaml is (this file is poster_assets/cli/launch.py).
ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = ROOT / "workspace.yaml"
# The module-level name of the Definitions object in the location's module.
_DEFS_ATTRIBUTE = "defs"
# The machine whose process runs a run: only there can a vanished process id mean a killed run
# (``runs.fail_orphaned_runs``), when several machines share the instance (``deploy/celery``).
HOST_TAG = "poster_assets/host"
HOST = socket.gethostname()


@functools.cache
def code_location() -> tuple[str, str]:
    """(location name, module) of the one code location in ``workspace.yaml``: the UI's."""
    config = yaml.safe_load(WORKSPACE.read_text(encoding="utf-8"))
    entries = [e["python_module"] for e in config["load_from"] if "python_module" in e]
    if len(entries) != 1:
        raise ValueError(f"{WORKSPACE} should load exactly one python_module")
    return entries[0]["location_name"], entries[0]["module_name"]


def _origins(job_name: str) -> tuple[ReconstructableJob, RemoteJobOrigin]:
    location, module = code_location()
    recon = ReconstructableRepository.for_module(
        module, _DEFS_ATTRIBUTE, working_directory=str(ROOT)
    ).get_reconstructable_job(job_name)
    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=module, working_directory=str(ROOT)
    )
    remote = RemoteJobOrigin(
        RemoteRepositoryOrigin(
            ManagedGrpcPythonEnvCodeLocationOrigin(target, location), SINGLETON_REPOSITORY_NAME
        ),
        job_name,
    )
    return recon, remote


def execute(
    inst: dg.DagsterInstance,
    job: dg.JobDefinition,
    *,
    partition_key: str | None = None,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> dg.JobExecutionResult:
    """Run ``job`` (resolved from the location's definitions) here, recorded on ``inst`` as a
    run of the UI's code location; a failure is in the result, not raised."""
    recon, remote = _origins(job.name)
    if asset_selection:
        recon = recon.get_subset(asset_selection=frozenset(asset_selection))
    tags = {PARTITION_NAME_TAG: partition_key} if partition_key else {}
    plan = create_execution_plan(recon, run_config=run_config or {}, tags=tags, instance_ref=inst.get_ref())
    run = inst.create_run_for_job(
        job_def=recon.get_definition(),
        execution_plan=plan,
        run_config=run_config,
        tags={**job.run_tags, **tags, HOST_TAG: HOST},
        asset_selection=frozenset(asset_selection) if asset_selection else None,
        remote_job_origin=remote,
        job_code_origin=recon.get_python_origin(),
    )
    return execute_run(recon, run, inst, raise_on_error=False)
