"""What a dbt build reads, as one version string, read without dbt: the keys and tables it
names agree with what dagster-dbt loads, and the string moves exactly when an input does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from poster_assets.defs.dbt import inputs
from poster_assets.defs.dbt.assets import sql_models
from poster_assets.storage.database import Database

VERSIONS = {"ocr_text": "ocr-1", "depth_maps": "depth-1"}


def test_model_keys_and_input_tables_are_those_dagster_dbt_loads() -> None:
    manifest = inputs.load_manifest()
    models = inputs.models(manifest)
    assert set(models) == set(sql_models.keys)
    order = [k.to_user_string() for k in models]
    # Upstream first: sql_models yields them in this order when it skips the build.
    assert order.index("staging/stg_posters") < order.index("marts/poster_annotations")
    assert order.index("marts/poster_annotations") < order.index("marts/ssl_labels")
    sources = {"raw_posters", "ocr_text", "depth_maps", "foreground_masks", "layer_masks"}
    # `extractions` is read by name; `current_versions` is written by the build from VERSIONS.
    assert set(inputs.input_tables(manifest)) == sources | {"extractions"}


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "poster_assets.duckdb")
    database.ensure_schema()
    with database.transaction() as conn:
        conn.execute(
            "INSERT INTO extractions VALUES ('ocr_text', 'p1', 'ocr-1', 'ok', NULL, 'b', 0.1, now())"
        )
    return database


def test_the_version_moves_with_a_table_the_versions_and_the_project_only(
    db: Database, tmp_path: Path
) -> None:
    manifest = inputs.load_manifest()
    first = inputs.inputs_version(db, VERSIONS, manifest)
    assert first.startswith("dbt-inputs-v1:")
    assert inputs.inputs_version(db, dict(reversed(VERSIONS.items())), manifest) == first

    # A table the SQL never reads, and the one the build writes itself: no change.
    with db.transaction() as conn:
        conn.execute("INSERT INTO poster_neighbors VALUES ('p1', 'poster', 'v', 1, 'p2', 0.5)")
        conn.execute("INSERT INTO current_versions VALUES ('ocr_text', 'ocr-0', now())")
    assert inputs.inputs_version(db, VERSIONS, manifest) == first

    # A value changed in place, with the same row count: a new version; undone: the old one.
    with db.transaction() as conn:
        conn.execute("UPDATE extractions SET status = 'failed'")
    changed = inputs.inputs_version(db, VERSIONS, manifest)
    assert changed != first
    with db.transaction() as conn:
        conn.execute("UPDATE extractions SET status = 'ok'")
    assert inputs.inputs_version(db, VERSIONS, manifest) == first

    # Another current version.
    assert inputs.inputs_version(db, {**VERSIONS, "depth_maps": "depth-2"}, manifest) != first

    # An edited model file.
    project = tmp_path / "dbt"
    shutil.copytree(inputs.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    assert inputs.inputs_version(db, VERSIONS, manifest, project) == first
    sql = project / "models" / "marts" / "ssl_labels.sql"
    sql.write_text(sql.read_text() + "\n-- a comment\n")
    assert inputs.inputs_version(db, VERSIONS, manifest, project) != first
