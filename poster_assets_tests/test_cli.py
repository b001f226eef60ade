"""The CLI as a person uses it (click's runner, real DuckDB, real Dagster instance)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from poster_assets.cli import main, runs
from poster_assets.defs.partitions import BATCHES
from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.extract.versions import current_versions
from poster_assets.models.hub import Models
from poster_assets.storage.store import Store


@pytest.fixture(scope="module")
def _ingested_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One home with the bad-inputs folder ingested through the CLI, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("cli")
    home, folder = root / "home", root / "broken"
    (home / "dagster").mkdir(parents=True)
    write_bad_inputs(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSTER_ASSETS_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        result = CliRunner().invoke(main, ["ingest", str(folder)])
    assert result.exit_code == 0, result.output
    assert "quarantined zero_bytes.jpg: empty file" in result.output
    return home, folder


@pytest.fixture
def ingested(_ingested_home: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    home, folder = _ingested_home
    monkeypatch.setenv("POSTER_ASSETS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    return folder


def test_ingest_then_query(ingested: Path) -> None:
    out = CliRunner().invoke(
        main, ["sql", "SELECT status, count(*) AS n FROM raw_posters GROUP BY ALL", "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    counts = {r["status"]: r["n"] for r in json.loads(out.output)}
    assert counts == {"ok": 10, "quarantined": 5, "duplicate": 1}
    again = CliRunner().invoke(main, ["ingest", str(ingested)])
    assert "nothing new" in again.output


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("INSERT INTO raw_posters (poster_id) VALUES ('x')", "not INSERT"),
        ("DROP TABLE raw_posters", "not DROP"),
        ("ATTACH 'other.duckdb'", "not ATTACH"),
        ("COPY (SELECT 1) TO 'out.csv'", "not COPY"),
        ("SELECT 1; DROP TABLE raw_posters", "exactly one statement"),
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission"),
        ("CREATE TEMP TABLE t AS PIVOT raw_posters ON status USING count(*)", "not CREATE"),
    ],
)
def test_sql_refuses_writes(ingested: Path, query: str, message: str) -> None:
    out = CliRunner().invoke(main, ["sql", query])
    assert out.exit_code != 0
    assert message in out.output
    count = CliRunner().invoke(main, ["sql", "SELECT count(*) AS n FROM raw_posters", "--format", "csv"])
    assert count.output.splitlines()[1] == "16"


def test_sql_pivots_and_hides_the_engine_settings(ingested: Path) -> None:
    out = CliRunner().invoke(
        main, ["sql", "PIVOT (SELECT status FROM raw_posters) ON status USING count(*)", "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == [{"duplicate": 1, "ok": 10, "quarantined": 5}]
    settings = CliRunner().invoke(main, ["sql", "SELECT name, value FROM duckdb_settings()"])
    assert settings.exit_code != 0 and "not available here" in settings.output
    assert "memory_limit" not in settings.output


def test_sql_stops_a_long_query_and_says_how_to_raise_the_limit(ingested: Path) -> None:
    t0 = time.monotonic()
    out = CliRunner().invoke(main, ["sql", "SELECT count(*) FROM range(1000000000000)", "--timeout", "1"])
    assert out.exit_code != 0 and time.monotonic() - t0 < 15
    assert "ran for more than 1 s and was stopped" in out.output and "--timeout" in out.output
    too_long = CliRunner().invoke(main, ["sql", "SELECT 1", "--timeout", "600"])
    assert too_long.exit_code != 0 and "at most 50 s" in too_long.output


def test_sql_without_database_says_what_to_do(home: Path) -> None:
    out = CliRunner().invoke(main, ["sql", "SELECT 1"])
    assert out.exit_code != 0 and "Ingest something first" in out.output


def test_cli_starts_light_and_puts_the_venv_first_on_path(tmp_path: Path, monkeypatch) -> None:
    # `.venv/bin/poster-assets` without the venv activated: --help imports nothing heavy, and
    # every command runs with the venv's bin folder (dagster, dbt) first on PATH.
    code = (
        "import sys; from poster_assets.cli import main; "
        "heavy = {'dagster', 'cv2', 'torch', 'openvino', 'faiss'} & {m.split('.')[0] for m in sys.modules}; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PATH": "/usr/bin:/bin"})
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    out = CliRunner().invoke(main, ["bad-inputs", str(tmp_path / "bad")])
    assert out.exit_code == 0, out.output
    assert os.environ["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin", "/bin"]


def test_instance_config_is_merged_into_the_users_dagster_yaml(home: Path) -> None:
    config = home / "dagster" / "dagster.yaml"
    config.write_text(
        "run_monitoring:\n  enabled: true\ntelemetry:\n  enabled: true\n"
        "concurrency:\n  default_op_concurrency_limit: 3\n  runs:\n    max_concurrent_runs: 4\n"
    )
    inst = runs.instance()
    assert yaml.safe_load(config.read_text()) == {
        "run_monitoring": {"enabled": True},
        "telemetry": {"enabled": False},
        "concurrency": {
            "runs": {"max_concurrent_runs": 4},
            "pools": {"default_limit": 1, "granularity": "op"},
        },
    }
    pools = inst.get_concurrency_config().pool_config
    assert pools.default_pool_limit == 1 and pools.pool_granularity.value == "op"
    # Nothing missing: the file is left as it is.
    assert runs.ensure_instance_config(config) is False
    config.unlink()
    assert runs.ensure_instance_config(config) is True
    assert yaml.safe_load(config.read_text()) == runs.SHIPPED_INSTANCE_CONFIG


def test_gc_drops_old_versions_and_stale_embedding_kinds(home: Path) -> None:
    store = Store.at()
    current = current_versions(Models(store.models_dir))
    with store.db.transaction() as conn:
        conn.executemany(
            "INSERT INTO foreground_embeddings VALUES (?, ?, ?, 2, [0.6, 0.8])",
            [
                ["p1", "poster", current.kinds["poster"]],
                ["p1", "pixels", current.kinds["pixels"]],
                ["p1", "poster", "poster:old"],
                ["p1", "ssl", "ssl:no-encoder-is-current"],
            ],
        )
        conn.executemany(
            "INSERT INTO extractions VALUES (?, 'p1', ?, 'ok', NULL, 'b', 0.1, now())",
            [
                ["foreground_embeddings", current.embeddings],
                ["foreground_embeddings", "embed-v1+old"],
                ["ocr_text", current.ocr],
                ["ocr_text", "ppocr:old"],
            ],
        )
        conn.execute(
            "INSERT INTO ocr_text VALUES ('p1', 'ppocr:old', 0, 'TITLE', 0.9, [0,0,1,0,1,1,0,1], [0,0,1,1])"
        )

    dry = CliRunner().invoke(main, ["gc", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove 3 rows and 0 files" in dry.output
    assert "poster:old" in dry.output and "ssl:no-encoder-is-current" in dry.output
    assert store.db.query("SELECT count(*) FROM foreground_embeddings")[0][0] == 4

    done = CliRunner().invoke(main, ["gc"])
    assert done.exit_code == 0, done.output
    assert "removed 3 rows" in done.output
    kept = store.db.query("SELECT kind, model_version FROM foreground_embeddings ORDER BY 1")
    assert kept == [("pixels", current.kinds["pixels"]), ("poster", current.kinds["poster"])]
    records = store.db.query("SELECT asset, model_version FROM extractions ORDER BY 1")
    assert records == [("foreground_embeddings", current.embeddings), ("ocr_text", current.ocr)]
    assert store.db.query("SELECT count(*) FROM ocr_text")[0][0] == 0
    again = CliRunner().invoke(main, ["gc"])
    assert "nothing to remove" in again.output


def test_cli_runs_are_runs_of_the_uis_code_location(ingested: Path) -> None:
    # The UI lists a job's runs (its page, the Overview timeline) by this label; runs made by
    # `execute_in_process` lack it and only show in the global run list.
    from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

    from poster_assets.cli.launch import code_location

    location, _ = code_location()
    inst = runs.instance()
    label = {REPOSITORY_LABEL_TAG: f"__repository__@{location}"}
    batch = inst.get_runs(filters=dg.RunsFilter(job_name="batch_job", tags=label))
    assert batch, "the ingest's run is not listed on batch_job's page"
    run = batch[0]
    assert run.remote_job_origin.location_name == location == "poster_assets"
    assert run.tags["dagster/partition"] in inst.get_dynamic_partitions(BATCHES)
    assert run.asset_selection == {dg.AssetKey("raw_posters")}
    assert run.status == dg.DagsterRunStatus.SUCCESS


def test_the_program_keeps_the_commands_exit_status(home: Path) -> None:
    # `poster-assets` is ``entry_point`` (freezing the heap for a quick exit), not ``main``.
    program = [sys.executable, "-m", "poster_assets.cli"]
    ok = subprocess.run([*program, "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "poster-assets" in ok.stdout
    failed = subprocess.run([*program, "sql", "SELECT 1"], capture_output=True, text=True)
    assert failed.returncode == 1 and "Ingest something first" in failed.stderr
    misused = subprocess.run([*program, "no-such-command"], capture_output=True, text=True)
    assert misused.returncode == 2
