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
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster_dbt import DbtProject

from poster_assets.defs.dbt.assets import SQL_MODEL_CHECKS, prune_run_folders, sql_models
from poster_assets.defs.dbt.project import (
    DBT_PROJECT_DIR,
    dbt_executable,
    manifest_is_stale,
    poster_dbt_project,
    run_target_dir,
)
from poster_assets.defs.dbt.resources import PosterDbtCli
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
    """A build of every model and every check the step reports (as ``corpus_job`` selects them)."""
    return dg.materialize(
        [sql_models],
        selection=dg.AssetSelection.assets(sql_models) | SQL_MODEL_CHECKS,
        instance=instance,
        resources={
            "dbt": PosterDbtCli(project_dir=poster_dbt_project, dbt_executable=dbt_executable()),
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

    def failures(result: dg.ExecuteInProcessResult) -> tuple[dict[str, str], set[tuple[str, str]]]:
        """dbt's status per node, and the (asset, check) pairs that failed."""
        assert not result.success
        failed = {
            (c.asset_key.to_user_string(), c.check_name)
            for c in result.get_asset_check_evaluations()
            if not c.passed
        }
        return _dbt_results(result, sql_store), failed

    # The failing source test is a failed check on the asset that wrote the bad rows, and it
    # stops the build at the staging models over that source: nothing is built on bad inputs.
    statuses, failed = failures(_build(sql_store, instance))
    assert failed == {("layer_masks", "layer_masks_one_layer_per_role")}
    assert {name for name, status in statuses.items() if status in {"fail", "error"}} == {
        "layer_masks_one_layer_per_role"
    }
    assert statuses["stg_extractions"] == statuses["extractions_poster_ingested"] == "skipped"
    assert statuses["poster_annotations"] == "skipped"

    # With the layers repaired, the stray extraction record fails its test on stg_extractions,
    # and the marts are not published over it.
    with sql_store.db.transaction() as conn:
        conn.execute("DELETE FROM layer_masks WHERE layer_index = 99")
    result = _build(sql_store, instance)
    statuses, failed = failures(result)
    assert failed == {("staging/stg_extractions", "extractions_poster_ingested")}
    assert statuses["poster_annotations"] == "skipped"
    built = {m.asset_key.to_user_string() for m in result.asset_materializations_for_node("sql_models")}
    assert built == {"staging/stg_posters", "staging/stg_extractions"}
    # A failed build stands for nothing: its models carry no dbt-inputs data version, so the
    # next build runs dbt again even over the same inputs.
    assert not [v for v in _made_from(result).values() if v and v.startswith("dbt-inputs")]
    assert _dbt_results(_build(sql_store, instance), sql_store)


def _made_from(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, str | None]:
    """Each model materialized by the run -> its data version."""
    return {
        m.asset_key: m.tags.get(DATA_VERSION_TAG)
        for m in result.asset_materializations_for_node("sql_models")
    }


@pytest.mark.slow
def test_a_build_over_unchanged_inputs_runs_no_dbt_and_keeps_the_models_current(
    sql_store: PosterStore, instance
) -> None:
    first = _build(sql_store, instance)
    assert first.success
    built = _made_from(first)
    (version,) = set(built.values())
    assert set(built) == set(sql_models.keys) and version.startswith("dbt-inputs-v1:")
    builds = set(run_target_dir(sql_store.home_path).glob("sql_models-*"))

    # Nothing it reads changed: no dbt process, the same data version (downstream stays current),
    # the row counts read now, and the dbt tests not run again (Dagster shows them skipped in
    # this run; their last results stand).
    again = _build(sql_store, instance)
    assert again.success
    assert set(run_target_dir(sql_store.home_path).glob("sql_models-*")) == builds
    assert _made_from(again) == built
    assert again.get_asset_check_evaluations() == []
    counts = {
        m.asset_key: m.metadata["dagster/row_count"].value
        for m in first.asset_materializations_for_node("sql_models")
    }
    for m in again.asset_materializations_for_node("sql_models"):
        assert m.metadata["dagster/row_count"].value == counts[m.asset_key] > 0
        assert m.metadata["dbt_build"].value.startswith("skipped"), m.asset_key

    # A sidecar title fixed in place: the same row count, yet a build, and the marts show it.
    with sql_store.db.transaction() as conn:
        conn.execute(
            "UPDATE raw_posters SET title = 'FIXED TITLE' WHERE status = 'ok' AND file_name = "
            "(SELECT min(file_name) FROM raw_posters WHERE status = 'ok')"
        )
    fixed = _build(sql_store, instance)
    assert fixed.success
    assert len(set(run_target_dir(sql_store.home_path).glob("sql_models-*")) - builds) == 1
    assert set(_made_from(fixed).values()) - {version}
    assert len(fixed.get_asset_check_evaluations()) == len(sql_models.check_keys)
    titles = sql_store.db.query(
        "SELECT count(*) FROM marts.poster_annotations WHERE sidecar_title = 'FIXED TITLE'"
    )
    assert titles == [(1,)]


def _dbt_tests() -> dict[str, dict]:
    """Test name -> its node in the manifest the definitions load."""
    manifest = json.loads(Path(poster_dbt_project.manifest_path).read_text())
    return {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "test"}


def _column_types(schema: dg.TableSchema) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in schema.columns]


def test_every_dbt_test_is_a_check_on_the_asset_it_tests_named_and_described_as_in_dbt() -> None:
    from poster_assets.cli.runs import definitions

    graph = definitions().resolve_asset_graph()
    tests = _dbt_tests()
    specs = {spec.name: spec for spec in sql_models.check_specs}
    # Every dbt test (on sources and singular ones too) is a check named as its `name:`, and says
    # what it guards (its `description:`).
    assert set(specs) == set(tests)
    assert all(specs[name].description == test["description"] != "" for name, test in tests.items())

    def checks_on(*path: str) -> set[str]:
        return {c.name for c in graph.asset_check_keys if c.asset_key == dg.AssetKey(list(path))}

    assert checks_on("raw_posters") == {"raw_posters_id_present", "raw_posters_status_known"}
    assert {"layer_masks_one_layer_per_role", "layer_masks_role_known"} <= checks_on("layer_masks")
    assert "ocr_text_confidence_in_0_1" in checks_on("ocr_text")
    assert "foreground_masks_area_in_0_1" in checks_on("foreground_masks")
    assert checks_on("marts", "extraction_coverage") == {
        "coverage_adds_up",
        "extraction_coverage_asset_known",
        "extraction_coverage_asset_present",
        "extraction_coverage_missing_not_negative",
        "extraction_coverage_one_current_version",
        "extraction_coverage_one_row_per_version",
    }
    # The `extractions` table's tests are on the model that reads it; no stray source asset.
    on_extractions = checks_on("staging", "stg_extractions")
    assert {"extractions_poster_ingested", "extractions_asset_known"} <= on_extractions
    assert not [k for k in graph.get_all_asset_keys() if k.path[0] == "poster_store"]
    # Every model's definition documents its columns with their types.
    for spec in sql_models.specs:
        columns = spec.metadata["dagster/column_schema"].columns
        assert columns and all(c.type != "?" and c.description for c in columns), spec.key


@pytest.mark.slow
def test_a_build_reports_checks_row_counts_and_column_schemas(sql_store: PosterStore, instance) -> None:
    result = _build(sql_store, instance)
    assert result.success
    logs = instance.all_logs(result.run_id)
    # Each dbt test comes back as its check's result: no observations, nothing let through unselected.
    kinds = [e.dagster_event.event_type_value for e in logs if e.dagster_event]
    assert "ASSET_OBSERVATION" not in kinds and "ASSET_CHECK_EVALUATION" in kinds
    assert not [e.user_message for e in logs if "not selected" in e.user_message]
    evaluations = {c.asset_check_key: c for c in result.get_asset_check_evaluations()}
    assert set(evaluations) == set(sql_models.check_keys)
    assert all(c.passed for c in evaluations.values()), [k for k, c in evaluations.items() if not c.passed]
    assert dg.AssetCheckKey(dg.AssetKey("raw_posters"), "raw_posters_status_known") in evaluations
    assert dg.AssetCheckKey(dg.AssetKey(["marts", "extraction_coverage"]), "coverage_adds_up") in evaluations

    # Every model's materialization: its size and its columns with DuckDB's types, as the database
    # has them now, and as the definitions (dbt's YAML) document them.
    materializations = result.asset_materializations_for_node("sql_models")
    assert {m.asset_key for m in materializations} == set(sql_models.keys)
    declared = {spec.key: spec.metadata["dagster/column_schema"] for spec in sql_models.specs}
    for m in materializations:
        relation = ".".join(m.asset_key.path)  # staging.stg_posters, marts.poster_annotations, ...
        ((rows,),) = sql_store.db.query(f"SELECT count(*) FROM {relation}")
        described = [(name, kind) for name, kind, *_ in sql_store.db.query(f"DESCRIBE {relation}")]
        assert m.metadata["dagster/row_count"].value == rows > 0, m.asset_key
        assert _column_types(m.metadata["dagster/column_schema"].schema) == described, m.asset_key
        assert _column_types(declared[m.asset_key]) == described, m.asset_key


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
