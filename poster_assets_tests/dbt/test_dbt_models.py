"""The dbt models built by dagster-dbt over a real extracted corpus, and their tests failing on bad rows.

The corpus is generated, ingested and extracted once per module (about 30 s); each test builds the
models on its own copy of that database.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster_dbt import DbtCliResource, DbtProject

from poster_assets.defs.dbt.assets import prune_run_folders, sql_models
from poster_assets.defs.dbt.project import (
    DBT_PROJECT_DIR,
    dbt_executable,
    manifest_is_stale,
    poster_dbt_project,
    run_target_dir,
)
from poster_assets.defs.resources import ModelsResource, PosterStore
from poster_assets.demo import generate_corpus
from poster_assets_tests.extracted import extract_folder

N_POSTERS = 4
EXTRACTORS = ["ocr_text", "depth_maps", "foreground_masks", "layer_masks"]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(database file, corpus folder) after ingest and the four extractors on N_POSTERS + 1 broken file."""
    home = tmp_path_factory.mktemp("extracted")
    (home / "dagster").mkdir()
    corpus = home / "corpus"
    generate_corpus(corpus, n=N_POSTERS, seed=1)
    (corpus / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    store = extract_folder(home, corpus)
    return store.db_path, corpus


@pytest.fixture
def sql_store(extracted: tuple[Path, Path], store: PosterStore) -> PosterStore:
    """A fresh home holding a copy of the extracted database (dbt reads no blob files)."""
    shutil.copy(extracted[0], store.db_path)
    return store


def _build(store: PosterStore, instance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [sql_models],
        instance=instance,
        resources={
            "dbt": DbtCliResource(project_dir=poster_dbt_project, dbt_executable=dbt_executable()),
            "store": store,
            "models": ModelsResource(models_dir=str(store.models_dir)),
        },
        raise_on_error=False,
    )


def _rows(store: PosterStore, sql: str, params: list | None = None) -> list[dict]:
    with store.db.connect(read_only=True) as conn:
        cur = conn.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _dbt_results(result: dg.ExecuteInProcessResult, store: PosterStore) -> dict[str, str]:
    """dbt node name -> status ("pass", "fail", "success", "skipped", ...) of the run's last dbt build.

    Each invocation writes its artifacts to ``<home>/dbt/target/<op>-<run id[:7]>-<uuid>``.
    """
    runs = run_target_dir(store.home_path).glob(f"sql_models-{result.run_id[:7]}-*/run_results.json")
    newest = max(runs, key=lambda p: p.stat().st_mtime)
    return {r["unique_id"].split(".")[2]: r["status"] for r in json.loads(newest.read_text())["results"]}


def _release_after_dbt_met_the_lock(conn: duckdb.DuckDBPyConnection, since: float, home: Path) -> None:
    """Close ``conn`` once a dbt log written after ``since`` shows the lock conflict (60 s at most)."""
    target = run_target_dir(home)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = [p for p in target.glob("sql_models-*/dbt.log") if p.stat().st_mtime >= since]
        if any("Could not set lock" in p.read_text(errors="replace") for p in logs):
            break
        time.sleep(0.2)
    conn.close()


@pytest.mark.slow
def test_models_retry_on_the_lock_and_have_one_row_per_ok_poster_at_current_versions(
    sql_store: PosterStore, instance, extracted: tuple[Path, Path]
) -> None:
    ids = [
        r[0] for r in sql_store.db.query("SELECT poster_id FROM raw_posters WHERE status = 'ok' ORDER BY 1")
    ]
    versions = dict(
        sql_store.db.query("SELECT asset, any_value(model_version) FROM extractions GROUP BY ALL")
    )
    with sql_store.db.transaction() as conn:
        # The same bytes ingested again from another path: still one annotation row per poster.
        conn.execute(
            "INSERT INTO raw_posters SELECT * REPLACE (source_uri || '.copy' AS source_uri, "
            "ingested_at + INTERVAL 1 HOUR AS ingested_at) FROM raw_posters WHERE poster_id = ?",
            [ids[0]],
        )
        # A newer OCR version the models in use do not serve (read two posters, failed on a third):
        # not current, so it changes nothing in the marts.
        conn.execute(
            "INSERT INTO ocr_text SELECT * REPLACE ('ppocr:v2' AS model_version, "
            "CASE WHEN line_index = 0 THEN lower(text) ELSE text END AS text) "
            "FROM ocr_text WHERE poster_id IN (?, ?)",
            ids[:2],
        )
        conn.execute(
            "INSERT INTO extractions SELECT * REPLACE ('ppocr:v2' AS model_version, "
            "CASE WHEN poster_id = ? THEN 'failed' ELSE 'ok' END AS status, "
            "extracted_at + INTERVAL 1 DAY AS extracted_at) "
            "FROM extractions WHERE asset = 'ocr_text' AND poster_id IN (?, ?, ?)",
            [ids[2], *ids[:3]],
        )
        # The current depth model failed on the last poster: it has no current depth value.
        conn.execute(
            "UPDATE extractions SET status = 'failed', error = 'test' "
            "WHERE asset = 'depth_maps' AND poster_id = ?",
            [ids[3]],
        )
    # Another process (this one: DuckDB locks per process) holds the write lock when dbt starts.
    conn = duckdb.connect(str(sql_store.db_path))
    releaser = threading.Thread(
        target=_release_after_dbt_met_the_lock, args=(conn, time.time() - 1, sql_store.home_path)
    )
    releaser.start()
    result = _build(sql_store, instance)
    releaser.join()
    assert result.success
    # The first attempt met the lock; Dagster's retry policy ran the step again.
    events = [e.dagster_event.event_type_value for e in instance.all_logs(result.run_id) if e.dagster_event]
    assert "STEP_UP_FOR_RETRY" in events and "STEP_RESTARTED" in events
    # What dbt took as current is what the models folder serves.
    recorded = dict(sql_store.db.query("SELECT asset, model_version FROM current_versions"))
    assert {a: recorded[a] for a in EXTRACTORS} == {a: versions[a] for a in EXTRACTORS}

    # Every dbt test on a model ran as an asset check and passed.
    checks = result.get_asset_check_evaluations()
    assert len(checks) == len(sql_models.check_keys) > 20
    assert all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]

    ann = {a["poster_id"]: a for a in _rows(sql_store, "SELECT * FROM marts.poster_annotations")}
    assert sorted(ann) == ids
    # Per asset, the value at the version in use; a newer version nobody serves is ignored.
    assert [ann[i]["ocr_version"] for i in ids] == [versions["ocr_text"]] * len(ids)
    assert ann[ids[3]]["depth_version"] is None and not ann[ids[3]]["is_complete"]
    complete = [a for a in ann.values() if a["poster_id"] != ids[3]]
    truth = {
        json.loads(line)["title"]: json.loads(line)
        for line in (extracted[1] / "ground_truth.jsonl").read_text().splitlines()
    }
    placements_right = 0
    for a in complete:
        assert a["depth_version"] == versions["depth_maps"]
        assert a["foreground_version"] == versions["foreground_masks"]
        assert a["layers_version"] == versions["layer_masks"]
        assert a["decoder_version"].startswith("pillow-")
        assert a["title_source"] == "title_layer" and a["title_version"] == a["layers_version"]
        assert 2 <= a["layer_count"] <= 7 and a["is_complete"]
        assert a["subject_depth_plane"] in {"front", "middle", "back"}
        assert 0 <= a["subject_depth_rank"] < a["layer_count"]
        assert 0 < a["text_coverage"] <= 1 and a["ocr_lines"] >= 1
        assert 0 <= a["foreground_area"] <= 1
        assert a["genres"] and 1900 < a["year"] < 2100 and a["sidecar_title"]
        placements_right += a["title_placement"] == truth[a["sidecar_title"].upper()]["title_placement"]
    assert placements_right >= len(complete) - 1, [
        (a["sidecar_title"], a["title_placement"]) for a in complete
    ]

    labels = _rows(sql_store, "SELECT * FROM marts.ssl_labels ORDER BY curriculum_rank")
    assert [r["curriculum_rank"] for r in labels] == list(range(1, len(complete) + 1))
    difficulties = [r["difficulty"] for r in labels]
    assert difficulties == sorted(difficulties) and all(0 <= d <= 1 for d in difficulties)
    assert len(set(difficulties)) > 1
    assert all(r["foreground_bucket"] in {"small", "medium", "large"} and r["has_text"] for r in labels)
    assert {r["primary_genre"] for r in labels} <= {g for a in ann.values() for g in a["genres"]}

    coverage = {
        (c["asset"], c["model_version"]): c
        for c in _rows(sql_store, "SELECT * FROM marts.extraction_coverage")
    }
    assert len(coverage) == len(EXTRACTORS) + 1
    for asset in EXTRACTORS:
        c = coverage[asset, versions[asset]]
        failed = int(asset == "depth_maps")
        assert (c["ok_posters"], c["failed_posters"], c["missing_posters"]) == (N_POSTERS - failed, failed, 0)
        assert c["is_current_version"] and c["current_for_posters"] == N_POSTERS - failed
    new = coverage["ocr_text", "ppocr:v2"]
    assert (new["ok_posters"], new["failed_posters"], new["missing_posters"]) == (2, 1, 1)
    assert not new["is_current_version"] and new["current_for_posters"] == 0


@pytest.mark.slow
def test_broken_rows_fail_the_right_dbt_tests(sql_store: PosterStore, instance) -> None:
    with sql_store.db.transaction() as conn:
        # A second subject layer for one poster at the current version ...
        conn.execute(
            "INSERT INTO layer_masks SELECT * REPLACE (99 AS layer_index) FROM layer_masks "
            "WHERE role = 'subject' LIMIT 1"
        )
        # ... and an extraction record of a poster that was never ingested.
        conn.execute(
            "INSERT INTO extractions SELECT * REPLACE ('no-such-poster' AS poster_id) "
            "FROM extractions LIMIT 1"
        )
    result = _build(sql_store, instance)
    assert not result.success

    statuses = _dbt_results(result, sql_store)
    failed = {name for name, status in statuses.items() if status in {"fail", "error"}}
    expected = (
        "source_at_most_one_per_group_poster_store_layer_masks",
        "source_relationships_poster_store_extractions",
    )
    assert all(any(n.startswith(e) for n in failed) for e in expected), failed
    assert len(failed) == 2, failed
    # A failing source test stops the build before the marts: nothing is published over bad inputs.
    assert statuses["poster_annotations"] == "skipped"
    assert not result.asset_materializations_for_node("sql_models") or all(
        "marts" not in m.asset_key.path for m in result.asset_materializations_for_node("sql_models")
    )


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root``: (size, mtime): a file written, replaced or added shows."""
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in [root, *root.rglob("*")]
    }


@pytest.mark.slow
def test_a_build_writes_only_under_the_home(sql_store: PosterStore, instance) -> None:
    before = _tree(DBT_PROJECT_DIR)
    result = _build(sql_store, instance)
    assert result.success
    # Nothing in the source tree changed (no target/<run> folder, no dbt.log, no logs/) ...
    assert _tree(DBT_PROJECT_DIR) == before
    # ... the build's artifacts and its log are in its own folder under the home.
    (run,) = run_target_dir(sql_store.home_path).glob(f"sql_models-{result.run_id[:7]}-*")
    assert {"run_results.json", "manifest.json", "dbt.log"} <= {p.name for p in run.iterdir()}


_BUILD_FROM_A_READ_ONLY_PROJECT = """
import os
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from poster_assets.defs.dbt import project
from poster_assets.defs.dbt.project import DBT_PROJECT_DIR, dbt_executable, poster_dbt_project

home = Path(os.environ["POSTER_ASSETS_HOME"])
assert DBT_PROJECT_DIR == Path(os.environ["EXPECTED_PROJECT_DIR"]), DBT_PROJECT_DIR
assert not os.access(DBT_PROJECT_DIR / "target", os.W_OK)
assert Path(poster_dbt_project.manifest_path).is_relative_to(home / "dbt"), poster_dbt_project.manifest_path
project.prepare_manifest()

from poster_assets.defs.dbt.assets import sql_models  # noqa: E402 - loads the manifest just prepared
from poster_assets.defs.resources import ModelsResource, PosterStore  # noqa: E402

with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
    result = dg.materialize(
        [sql_models],
        instance=instance,
        resources={
            "dbt": DbtCliResource(project_dir=poster_dbt_project, dbt_executable=dbt_executable()),
            "store": PosterStore(home=str(home)),
            "models": ModelsResource(models_dir=str(home / "models")),
        },
        raise_on_error=False,
    )
    assert result.success
"""


def _immutable(path: Path, on: bool) -> bool:
    """chattr -R +i: not even root may write there (as a read-only install is to its user)."""
    flag = "+i" if on else "-i"
    return subprocess.run(["chattr", "-R", flag, str(path)], capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_read_only_project_builds_with_its_manifest_and_runs_under_the_home(
    tmp_path: Path, extracted: tuple[Path, Path]
) -> None:
    """The package and its dbt project copied to a folder nobody may write (``chattr +i``, which
    binds root too): the manifest is prepared under the home, each build writes there, and a
    build of ``sql_models`` works."""
    checkout = tmp_path / "install"
    package = Path(__file__).resolve().parents[2] / "poster_assets"
    shutil.copytree(package, checkout / "poster_assets", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(DBT_PROJECT_DIR, checkout / "dbt", ignore=shutil.ignore_patterns("target", "logs"))
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(extracted[0], home / "poster_assets.duckdb")
    if not _immutable(checkout / "dbt", on=True):
        pytest.skip("chattr +i is not permitted here; nothing else makes a folder read-only to root")
    try:
        before = _tree(checkout / "dbt")
        env = {
            **os.environ,
            "PYTHONPATH": str(checkout),  # this copy of poster_assets, not the checkout's
            "PYTHONDONTWRITEBYTECODE": "1",
            "POSTER_ASSETS_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "EXPECTED_PROJECT_DIR": str(checkout / "dbt"),
        }
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_BUILD_FROM_A_READ_ONLY_PROJECT)],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
        assert _tree(checkout / "dbt") == before
    finally:
        _immutable(checkout / "dbt", on=False)
    assert len(list((home / "dbt").glob("manifest-*/manifest.json"))) == 1
    (run,) = run_target_dir(home).glob("sql_models-*")
    assert {"run_results.json", "dbt.log"} <= {p.name for p in run.iterdir()}


@pytest.mark.slow
def test_manifest_is_prepared_when_missing_or_stale(tmp_path: Path) -> None:
    project_dir = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, project_dir, ignore=shutil.ignore_patterns("target", "logs"))
    project = DbtProject(project_dir=project_dir)
    assert not project.manifest_path.exists() and manifest_is_stale(project)
    project.preparer.prepare(project)
    manifest = json.loads(project.manifest_path.read_text())
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert {"poster_annotations", "ssl_labels", "extraction_coverage"} <= models

    # Current: not parsed again. A model edited afterwards makes it stale.
    assert not manifest_is_stale(project)
    time.sleep(0.05)
    (project_dir / "models" / "marts" / "extra_model.sql").write_text("select 1 as one\n")
    assert manifest_is_stale(project)


def test_prune_run_folders_keeps_the_newest_and_recent(tmp_path: Path) -> None:
    old = time.time() - 7200
    for i in range(5):
        folder = tmp_path / f"sql_models-run{i}"
        folder.mkdir()
        os.utime(folder, (old + i, old + i))
    (tmp_path / "sql_models-fresh").mkdir()
    (tmp_path / "other-run").mkdir()
    os.utime(tmp_path / "other-run", (old, old))
    removed = prune_run_folders(tmp_path, "sql_models", keep=3)
    assert sorted(p.name for p in removed) == ["sql_models-run0", "sql_models-run1", "sql_models-run2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other-run",
        "sql_models-fresh",
        "sql_models-run3",
        "sql_models-run4",
    ]
