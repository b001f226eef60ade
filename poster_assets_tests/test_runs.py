"""The instance the CLI runs on: pool limits from the shipped config, and what a killed run
leaves behind."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from poster_assets.cli.runs import ensure_instance_config, fail_orphaned_runs
from poster_assets.defs.resources import DB_POOL

# A writer in the pool that takes its slot and then hangs, as a killed `poster-assets run` would.
_HANGING_WRITER = textwrap.dedent(
    f"""
    import time
    from pathlib import Path
    import dagster as dg

    @dg.asset(pool="{DB_POOL}")
    def hanging_writer():
        Path("started").touch()
        time.sleep(600)

    dg.materialize([hanging_writer], instance=dg.DagsterInstance.get())
    """
)


@pytest.mark.slow
def test_a_killed_run_is_failed_and_gives_its_pool_slot_back(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "dagster"
    home.mkdir()
    ensure_instance_config(home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    writer = subprocess.Popen([sys.executable, "-c", _HANGING_WRITER], cwd=tmp_path, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert writer.poll() is None and time.monotonic() < deadline, "the writer never started"
            time.sleep(0.2)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(30)
    finally:
        if writer.poll() is None:
            writer.kill()

    with dg.DagsterInstance.get() as inst:
        assert inst.event_log_storage.get_concurrency_info(DB_POOL).claimed_slots
        (run,) = inst.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert fail_orphaned_runs(inst) == [run.run_id]
        assert inst.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert not inst.event_log_storage.get_concurrency_info(DB_POOL).claimed_slots
        assert fail_orphaned_runs(inst) == []

        @dg.asset(pool=DB_POOL)
        def next_writer() -> None:
            pass

        assert dg.materialize([next_writer], instance=inst).success  # would wait forever otherwise
