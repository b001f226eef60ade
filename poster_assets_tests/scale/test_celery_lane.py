"""The several-machines profile, on loopback: PostgreSQL for the Dagster instance, Redis as the
Celery broker, two Celery workers (``deploy/celery/services.sh``), the CLI launching batch runs
side by side with ``POSTER_ASSETS_EXECUTOR=celery``. `make test-scale` runs it.

Every poster must be extracted exactly once, no run may fail, the rows must be those of a
single-process run of the same files, and a worker process killed mid-batch loses nothing."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import dagster as dg
import duckdb
import psutil
import pytest

from poster_assets.demo import generate_corpus
from poster_assets.ingest.batch_state import EXTRACTORS

pytestmark = pytest.mark.scale

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "deploy" / "celery" / "services.sh"
CLI = str(ROOT / ".venv" / "bin" / "poster-assets")
WORKERS = ("w1", "w2")
BATCHES = 3
PER_BATCH = 4
# Comparing two homes: what a row is, without where and when it was made.
COMPARED = {
    "raw_posters": "poster_id, file_name, status, width, height, format, title, genres, year",
    "extractions": "asset, poster_id, model_version, status",
    "ocr_text": "poster_id, model_version, line_index, text, confidence, polygon, box",
    "depth_maps": "poster_id, model_version, depth_path, width, height, depth_min, depth_max, modes",
    "foreground_masks": "poster_id, model_version, mask_path, area_fraction, bbox, mean_probability",
    "layer_masks": "poster_id, model_version, layer_index, role, area_fraction, bbox, mean_depth, title_text",
    "foreground_embeddings": "poster_id, kind, model_version, dim, embedding",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, str]]:
    """PostgreSQL and Redis on free loopback ports; the variables ``services.sh`` says to export."""
    # Not under pytest's 0700 temporary folder: PostgreSQL runs as its own user when we are root.
    state = Path(tempfile.mkdtemp(prefix="poster-scale-", dir="/tmp"))
    state.chmod(0o755)
    ports = {"POSTER_ASSETS_PG_PORT": str(_free_port()), "POSTER_ASSETS_REDIS_PORT": str(_free_port())}
    env = {**os.environ, **ports}
    started = subprocess.run([SERVICES, "start", state], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    exported = dict(
        line.removeprefix("export ").split("=", 1)
        for line in started.stdout.splitlines()
        if line.startswith("export ")
    )
    try:
        yield {**ports, **exported}
    finally:
        subprocess.run([SERVICES, "stop", state], env=env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo posters in one folder per batch (``b0`` …), and a bigger ``kill`` batch of 20."""
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root / "all", n=BATCHES * PER_BATCH, seed=3)
    images = sorted(p for p in (root / "all").iterdir() if p.suffix in (".jpg", ".png"))
    for b in range(BATCHES):
        (root / f"b{b}").mkdir()
        for image in images[b * PER_BATCH : (b + 1) * PER_BATCH]:
            shutil.copy2(image, root / f"b{b}" / image.name)
    generate_corpus(root / "kill", n=20, seed=5)
    return root


def _env(home: Path, services: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTER_ASSETS_", "DAGSTER_"))}
    env.update(POSTER_ASSETS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), POSTER_ASSETS_OFFLINE="1")
    if services:
        env.update(services)
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 900) -> str:
    done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"poster-assets {' '.join(args)}:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


def _rows(home: Path, table: str, where: str = "") -> list[tuple]:
    with duckdb.connect(str(home / "poster_assets.duckdb"), read_only=True) as conn:
        return conn.execute(f"SELECT {COMPARED[table]} FROM {table} {where} ORDER BY ALL").fetchall()


def _same(a: object, b: object) -> bool:
    """Equal, floats within 1e-4: OpenVINO may split a convolution differently with the threads
    a worker process has, which moves the last bits."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _step_windows(inst: dg.DagsterInstance, step: str) -> list[tuple[str, float, float | None]]:
    """(run id, start, success) of every execution of ``step`` in every run: a step a worker ran
    twice has two starts."""
    windows = []
    for run in inst.get_runs():
        ends = [
            e.timestamp
            for e in inst.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
            if e.step_key == step
        ]
        for e in inst.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START):
            if e.step_key == step:
                windows.append((run.run_id, e.timestamp, ends[0] if ends else None))
    return windows


def _celery_workers(inst: dg.DagsterInstance) -> set[str]:
    """The workers (``name@host``) the runs' engine events say executed their steps."""
    names = set()
    for run in inst.get_runs():
        for e in inst.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            data = e.dagster_event.engine_event_data if e.dagster_event else None
            if data and "Celery worker" in data.metadata:
                names.add(data.metadata["Celery worker"].value)
    return names


@pytest.fixture(scope="module")
def cluster(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A home whose instance is on the PostgreSQL of ``services``, its ``poster_batch`` pool at
    two batches at once, and two Celery workers of one step each."""
    home = tmp_path_factory.mktemp("celery-home")
    env = _env(home, services)
    subprocess.run([SERVICES, "dagster-yaml", home / "dagster" / "dagster.yaml"], env=env, check=True)
    dagster = str(ROOT / ".venv" / "bin" / "dagster")
    subprocess.run([dagster, "instance", "concurrency", "set", "poster_batch", "2"], env=env, check=True)
    logs = {name: (home / f"{name}.log").open("w") for name in WORKERS}
    workers = {
        name: subprocess.Popen(
            [SERVICES, "worker", name], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        for name, log in logs.items()
    }
    try:
        yield {"home": home, "env": env, "workers": workers}
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for log in logs.values():
            log.close()


def _instance(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    for key in ("DAGSTER_HOME", "POSTER_ASSETS_PG_URL"):
        monkeypatch.setenv(key, env[key])
    return dg.DagsterInstance.get()


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus's batches in one process: the default executor and SQLite instance."""
    home = tmp_path_factory.mktemp("single")
    single = _env(home, None)
    for b in range(BATCHES):
        _cli(single, "ingest", str(corpus / f"b{b}"))
    _cli(single, "run")
    return home


def _assert_same_rows(home: Path, reference: Path) -> None:
    """Every compared table of ``home`` equals ``reference``'s rows of the same posters."""
    with duckdb.connect(str(home / "poster_assets.duckdb"), read_only=True) as conn:
        ids = ", ".join(f"'{pid}'" for (pid,) in conn.execute("SELECT poster_id FROM raw_posters").fetchall())
    for table in COMPARED:
        mine, theirs = _rows(home, table), _rows(reference, table, f"WHERE poster_id IN ({ids})")
        assert len(mine) == len(theirs) and mine, table
        differ = [(a, b) for a, b in zip(mine, theirs, strict=True) if not _same(a, b)]
        assert not differ, f"{table}: {differ[0]}"


def test_two_workers_extract_batches_side_by_side_as_one_process_would(
    cluster: dict, corpus: Path, reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, env = cluster["home"], cluster["env"]
    for b in range(BATCHES):
        _cli(env, "ingest", str(corpus / f"b{b}"))
    out = _cli(env, "run", "--parallel", str(BATCHES))
    assert f"{BATCHES + 1} run(s), 0 failed" in out, out

    posters = BATCHES * PER_BATCH
    assert len(_rows(home, "raw_posters", "WHERE status = 'ok'")) == posters
    _assert_same_rows(home, reference)
    # The rows came through the lake, written by both workers' step processes; every segment is
    # in the database, and the lake alone makes the same tables again.
    assert "0 not yet in the catalog" in _cli(env, "lake", "status")
    writers = {json.loads(p.read_text())["pid"] for p in (home / "lake").glob("batch=*/*/segment.json")}
    assert len(writers) >= 2, writers
    _cli(env, "lake", "rebuild")
    _assert_same_rows(home, reference)
    # Each poster once per extractor (the key allows no more) and no poster left out.
    with duckdb.connect(str(home / "poster_assets.duckdb"), read_only=True) as conn:
        query = "SELECT asset, count(DISTINCT poster_id) FROM extractions GROUP BY 1"
        per_asset = dict(conn.execute(query).fetchall())
    assert all(per_asset[a] == posters for a in EXTRACTORS), per_asset

    with _instance(env, monkeypatch) as inst:
        runs = inst.get_runs()
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert _celery_workers(inst) == {f"{w}@{socket.gethostname()}" for w in WORKERS}
        windows = _step_windows(inst, "poster_extractors")
        # One execution per batch, none repeated; and two batches really extracted at the same time.
        assert len(windows) == BATCHES and len({run for run, _, _ in windows}) == BATCHES
        overlapped = [(a, b) for a, b in itertools.combinations(windows, 2) if a[1] < b[2] and b[1] < a[2]]
        assert overlapped, f"no two batches extracted at the same time: {windows}"
        for pool in ("poster_batch", "poster_db"):
            assert not inst.event_log_storage.get_concurrency_info(pool).claimed_slots, pool


def _worker_children(workers: dict[str, subprocess.Popen]) -> list[int]:
    """The pool processes of the workers: the ones that execute steps."""
    return [child.pid for proc in workers.values() for child in psutil.Process(proc.pid).children()]


def test_a_worker_killed_mid_batch_loses_nothing(
    cluster: dict, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, env = cluster["home"], cluster["env"]
    out = _cli(env, "ingest", str(corpus / "kill"))
    batch = next(line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("batch "))
    run = subprocess.Popen([CLI, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    done = 0
    while done == 0:  # the first chunk of 16 posters is written, the last 4 are not
        assert run.poll() is None and time.monotonic() < deadline, "the batch never wrote a chunk"
        time.sleep(0.5)
        try:
            with duckdb.connect(str(home / "poster_assets.duckdb"), read_only=True) as conn:
                done = conn.execute(
                    "SELECT count(*) FROM extractions WHERE batch = ? AND asset = 'ocr_text'", [batch]
                ).fetchone()[0]
        except duckdb.IOException:  # a worker holds the file for its write
            continue
    assert done < 20
    children = _worker_children(cluster["workers"])
    assert len(children) == len(WORKERS)
    for pid in children:  # the one extracting and the idle one
        os.kill(pid, signal.SIGKILL)

    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output
    assert "0 failed" in output, output
    with duckdb.connect(str(home / "poster_assets.duckdb"), read_only=True) as conn:
        counts = conn.execute(
            "SELECT asset, count(*), count(DISTINCT poster_id) FROM extractions WHERE batch = ? GROUP BY 1",
            [batch],
        ).fetchall()
        failed = conn.execute("SELECT count(*) FROM extractions WHERE status <> 'ok'").fetchone()[0]
    assert {a: (n, d) for a, n, d in counts if a in EXTRACTORS} == {a: (20, 20) for a in EXTRACTORS}
    assert failed == 0
    # What the rows name is whole: a killed write leaves at most a temporary file, never a blob.
    with duckdb.connect(str(home / "poster_assets.duckdb"), read_only=True) as conn:
        blobs = conn.execute(
            "SELECT mask_path FROM foreground_masks UNION ALL SELECT depth_path FROM depth_maps "
            "UNION ALL SELECT DISTINCT labels_path FROM layer_masks"
        ).fetchall()
    assert all(cv2.imread(str(home / path), cv2.IMREAD_UNCHANGED) is not None for (path,) in blobs)

    with _instance(env, monkeypatch) as inst:
        partition = {r.run_id for r in inst.get_runs() if r.tags.get("dagster/partition") == batch}
        starts = [w for w in _step_windows(inst, "poster_extractors") if w[0] in partition]
        assert len(starts) == 2, "the killed step was not run again"
        assert len({run for run, _, _ in starts}) == 1
        assert inst.get_run_by_id(starts[0][0]).status == dg.DagsterRunStatus.SUCCESS


def test_the_multiprocess_executor_runs_each_step_in_its_own_process(
    corpus: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One machine, no services: ``POSTER_ASSETS_EXECUTOR=multiprocess`` gives the same rows."""
    home = tmp_path / "multiprocess"
    env = {**_env(home, None), "POSTER_ASSETS_EXECUTOR": "multiprocess"}
    _cli(env, "ingest", str(corpus / "b0"), "--extract")
    _assert_same_rows(home, reference)

    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as inst:
        runs = inst.get_runs()
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        batch_run = next(r for r in runs if r.tags.get("dagster/partition"))
        starts = inst.all_logs(batch_run.run_id, of_type=dg.DagsterEventType.STEP_START)
        pids = {e.dagster_event.pid for e in starts}
        assert len(starts) >= 3 and len(pids) == len(starts), pids  # a process per step
