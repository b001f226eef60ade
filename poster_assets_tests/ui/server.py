"""The Dagster UI started the way the README says (``make ui`` from a shell where the venv is
not activated) and spoken to through its GraphQL endpoint: the UI tests and
``benchmarks/ui_runs.py`` use it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poster_assets.cli.launch import code_location

ROOT = Path(__file__).resolve().parents[2]
_LOAD_TIMEOUT_S = 300
_FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN_STATUS = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime } } }"


def _post(
    url: str, query: str, variables: dict[str, Any] | None = None, timeout: float = 120
) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


@dataclass
class UI:
    url: str
    home: Path
    seconds_to_load: float
    log: Path
    location: str = field(default_factory=lambda: code_location()[0])

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = _post(self.url, query, variables)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def launch(
        self, job: str, partition: str | None = None, timeout_s: float = 900
    ) -> tuple[str, str, float]:
        """Launch ``job`` as the Launchpad does and wait: (run id, final status, seconds from
        the click to the run's end)."""
        t0 = time.perf_counter()
        params: dict[str, Any] = {
            "selector": {
                "repositoryLocationName": self.location,
                "repositoryName": "__repository__",
                "jobName": job,
            },
            "runConfigData": {},
        }
        if partition:
            params["executionMetadata"] = {"tags": [{"key": "dagster/partition", "value": partition}]}
        launched = self.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        while True:
            status = self.graphql(RUN_STATUS, {"id": run_id})["runOrError"]["status"]
            if status in _FINISHED:
                return run_id, status, time.perf_counter() - t0
            assert time.perf_counter() - t0 < timeout_s, f"run {run_id} still {status}"
            time.sleep(0.5)


def shell_env(home: Path) -> dict[str, str]:
    """A person's shell: the venv not activated (its bin folder not on PATH), offline."""
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "DAGSTER_HOME")}
    # Offline: `poster-assets demo` would otherwise pull the default models (tests never reach out).
    offline = {"POSTER_ASSETS_OFFLINE": "1"}
    return {**env, "PATH": os.pathsep.join(path), "POSTER_ASSETS_HOME": str(home), **offline}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loaded(url: str) -> bool:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
    try:
        entries = _post(url, query, timeout=10)["data"]["workspaceOrError"]["locationEntries"]
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


@contextlib.contextmanager
def started_ui(home: Path, load_timeout_s: float = _LOAD_TIMEOUT_S) -> Iterator[UI]:
    """``make ui`` over ``home`` on a free port, once its code location has loaded; stopped
    (the whole process group) on exit."""
    port = _free_port()
    log = home / "ui.log"
    t0 = time.perf_counter()
    with log.open("w") as out:
        # Its own session: `make` → `poster-assets ui` → `dagster dev` → webserver, daemon and
        # code server all go with one signal to the group.
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "ui", f"UI_PORT={port}"],
            cwd=ROOT,
            env=shell_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while not _loaded(url):
            if proc.poll() is not None or time.perf_counter() - t0 > load_timeout_s:
                raise RuntimeError(f"the UI did not load:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield UI(url, home, time.perf_counter() - t0, log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # what did not stop on TERM
            os.killpg(proc.pid, signal.SIGKILL)


def poster_assets(home: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """``.venv/bin/poster-assets ARGS`` over ``home`` from the same shell; raises on failure."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("poster-assets")), *args],
        cwd=ROOT,
        env=shell_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"poster-assets {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done
