"""The CLI as a person uses it (click's runner, real DuckDB, real Dagster instance)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from poster_assets.cli import main
from poster_assets.demo.bad_inputs import write_bad_inputs


@pytest.fixture
def ingested(tmp_path: Path, home: Path) -> Path:
    folder = tmp_path / "broken"
    write_bad_inputs(folder)
    result = CliRunner().invoke(main, ["ingest", str(folder)])
    assert result.exit_code == 0, result.output
    assert "quarantined zero_bytes.jpg: empty file" in result.output
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
    ],
)
def test_sql_refuses_writes(ingested: Path, query: str, message: str) -> None:
    out = CliRunner().invoke(main, ["sql", query])
    assert out.exit_code != 0
    assert message in out.output
    count = CliRunner().invoke(main, ["sql", "SELECT count(*) AS n FROM raw_posters", "--format", "csv"])
    assert count.output.splitlines()[1] == "16"


def test_sql_without_database_says_what_to_do(home: Path) -> None:
    out = CliRunner().invoke(main, ["sql", "SELECT 1"])
    assert out.exit_code != 0 and "Ingest something first" in out.output
