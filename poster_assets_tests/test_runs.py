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

from poster_assets.cli.launch import HOST, HOST_TAG
from poster_assets.cli.runs import ensure_instance_config, fail_orphaned_runs, free_slots_of_ended_runs
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

    dg.materialize([hanging_writer], instance=dg.DagsterInstance.get(), tags={{"{HOST_TAG}": HOST}})
    """
)


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An instance home with the shipped config, as ``DAGSTER_HOME``."""
    home = tmp_path / "dagster"
    home.mkdir()
    ensure_instance_config(home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _start_hanging_writer(tmp_path: Path, host: str) -> None:
    """A run that holds its pool slot, killed (-9) as its machine would see it."""
    script = f"HOST = {host!r}\n{_HANGING_WRITER}"
    writer = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=os.environ.copy())
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


@pytest.mark.slow
def test_a_killed_run_is_failed_and_gives_its_pool_slot_back(tmp_path: Path, dagster_home: Path) -> None:
    _start_hanging_writer(tmp_path, HOST)

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


@pytest.mark.slow
def test_a_run_of_another_machine_is_not_judged_by_its_process_id(tmp_path: Path, dagster_home: Path) -> None:
    """With the instance shared (``deploy/celery``), a process id means nothing off its machine."""
    _start_hanging_writer(tmp_path, "another-machine")
    with dg.DagsterInstance.get() as inst:
        (run,) = inst.get_runs()
        assert fail_orphaned_runs(inst) == []
        assert inst.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
        assert inst.event_log_storage.get_concurrency_info(DB_POOL).claimed_slots


def test_slots_still_held_by_an_ended_run_are_freed(tmp_path: Path, dagster_home: Path) -> None:

    @dg.asset
    def quick() -> None:
        pass

    with dg.DagsterInstance.get() as inst:
        ended = dg.materialize([quick], instance=inst).run_id
        storage = inst.event_log_storage
        storage.set_concurrency_slots(DB_POOL, 1)
        # What dagster-celery leaves when a worker could not start a step: the run failed, its claim stayed.
        assert storage.claim_concurrency_slot(DB_POOL, ended, "quick").is_claimed
        assert free_slots_of_ended_runs(inst) == [ended]
        assert not storage.get_concurrency_info(DB_POOL).claimed_slots
        assert free_slots_of_ended_runs(inst) == []
