import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from poster_assets.defs.ingest.assets import raw_posters
from poster_assets.defs.ingest.sensors import inbox_sensor
from poster_assets.defs.partitions import BATCHES
from poster_assets.defs.resources import PosterStore
from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.ingest.batches import plan_batch


def test_definitions_load() -> None:
    from poster_assets.definitions import defs

    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert dg.AssetKey("raw_posters") in keys
    assert defs.resolve_job_def("batch_job") is not None
    assert defs.resolve_sensor_def("inbox_sensor") is not None


def test_materialize_raw_posters_writes_rows(tmp_path: Path, store: PosterStore, instance) -> None:
    expected = write_bad_inputs(tmp_path / "in")
    manifest, _ = plan_batch(store.batches_dir, tmp_path / "in")
    manifest.save(store.batches_dir)
    instance.add_dynamic_partitions(BATCHES, [manifest.batch])
    result = dg.materialize(
        [raw_posters], partition_key=manifest.batch, instance=instance, resources={"store": store}
    )
    assert result.success
    (mat,) = result.asset_materializations_for_node("raw_posters")
    assert mat.metadata["ok"].value == sum(s == "ok" for s in expected.values())
    assert mat.metadata["quarantined"].value == sum(s == "quarantined" for s in expected.values())
    assert "data:image/jpeg;base64," in mat.metadata["preview"].value
    reasons = {r.data["file"]: r.data["reason"] for r in mat.metadata["quarantine_reasons"].records}
    assert reasons["zero_bytes.jpg"] == "empty file (0 bytes)"
    n = store.db.query("SELECT count(*) FROM raw_posters WHERE batch = ?", [manifest.batch])[0][0]
    assert n == len(expected)


def test_materialize_extended_bad_inputs_lists_sidecar_problems(
    tmp_path: Path, store: PosterStore, instance
) -> None:
    """FIFO, socket, symlinks, a non-UTF-8 name, a newline in a name (the preview draws it), a
    sparse 1 GiB file, a sidecar with bad values: one successful run, one row per file."""
    expected = write_bad_inputs(tmp_path / "in", extended=True)
    manifest, _ = plan_batch(store.batches_dir, tmp_path / "in")
    manifest.save(store.batches_dir)
    instance.add_dynamic_partitions(BATCHES, [manifest.batch])
    result = dg.materialize(
        [raw_posters],
        partition_key=manifest.batch,
        instance=instance,
        resources={"store": store},
        run_config={"ops": {"raw_posters": {"config": {"max_file_bytes": 2**20}}}},
    )
    assert result.success
    (mat,) = result.asset_materializations_for_node("raw_posters")
    assert mat.metadata["files"].value == len(expected)
    assert mat.metadata["new_rows"].value == len(expected)
    assert "data:image/jpeg;base64," in mat.metadata["preview"].value
    reasons = {r.data["file"]: r.data["reason"] for r in mat.metadata["quarantine_reasons"].records}
    assert (
        "FIFO" in reasons["fifo.jpg"]
        and "1.0 GiB" in reasons["huge_file.jpg"]
        and "1.0 MiB" in reasons["huge_file.jpg"]
    )
    problems = {r.data["where"]: r.data["problem"] for r in mat.metadata["sidecar_problem_list"].records}
    assert problems["cmyk.jpg"].startswith("year") and problems["grayscale.jpg"].startswith("genres")
    assert "array" in problems["sidecar line 6"]
    assert mat.metadata["sidecar_problems"].value == len(problems)


def _age(folder: Path, seconds: float = 60) -> None:
    past = time.time() - seconds
    for p in folder.iterdir():
        os.utime(p, (past, past))


def test_sensor_requests_a_run_for_new_files_only(store: PosterStore, instance) -> None:
    inbox = store.home_path / "inbox"
    write_bad_inputs(inbox)
    _age(inbox)
    ctx = dg.build_sensor_context(instance=instance, resources={"store": store})
    result = inbox_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    (req,) = result.run_requests
    (add,) = result.dynamic_partitions_requests
    assert add.partition_keys == [req.partition_key]
    assert (store.batches_dir / f"{req.partition_key}.json").exists()

    again = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"store": store}))
    assert isinstance(again, dg.SkipReason)

    (inbox / "late arrival.png").write_bytes((inbox / "affiche_été_ünïcødé.png").read_bytes())
    fresh = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"store": store}))
    assert isinstance(fresh, dg.SkipReason) and "settling" in fresh.skip_message
    _age(inbox)
    later = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"store": store}))
    assert isinstance(later, dg.SensorResult) and len(later.run_requests) == 1


@pytest.mark.slow
def test_workspace_loads_in_dagster_tooling() -> None:
    """What `dagster dev -w workspace.yaml` does first: load and validate the code location."""
    root = Path(__file__).resolve().parents[2]
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(root / "workspace.yaml")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
