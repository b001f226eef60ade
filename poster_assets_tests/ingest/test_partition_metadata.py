"""What the UI shows of raw_posters after a re-run, its columns, and a partition added by hand
(real Dagster in-process materialize, real DuckDB; no models run)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from poster_assets.cli import main, runs
from poster_assets.defs.embed.assets import foreground_embeddings
from poster_assets.defs.extract.assets import OCR_TEXT, poster_extractors
from poster_assets.defs.ingest.assets import raw_posters
from poster_assets.defs.partitions import BATCHES
from poster_assets.defs.resources import ModelsResource, PosterStore
from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.ingest.batches import plan_batch
from poster_assets.storage.store import Store

BATCH_ASSETS = [raw_posters, poster_extractors, foreground_embeddings]
# Partition facts: the same whether or not the run had anything to do.
FACTS = ("files", "ok", "quarantined", "duplicates", "skipped", "sidecar_problems", "dagster/row_count")


def _values(mat: dg.AssetMaterialization) -> dict:
    return {k: v.value for k, v in mat.metadata.items()}


def _records(value: dg.TableMetadataValue) -> list[dict]:
    return [r.data for r in value.records]


def test_a_rerun_shows_the_whole_batch_not_what_it_added(
    tmp_path: Path, store: PosterStore, instance
) -> None:
    expected = write_bad_inputs(tmp_path / "in", extended=True)
    manifest, _ = plan_batch(store.batches_dir, tmp_path / "in")
    manifest.save(store.batches_dir)
    instance.add_dynamic_partitions(BATCHES, [manifest.batch])

    def materialize() -> dict:
        result = dg.materialize(
            [raw_posters],
            partition_key=manifest.batch,
            instance=instance,
            resources={"store": store},
            run_config={"ops": {"raw_posters": {"config": {"max_file_bytes": 2**20}}}},
        )
        assert result.success
        (mat,) = result.asset_materializations_for_node("raw_posters")
        return _values(mat)

    first, second = materialize(), materialize()
    assert (first["new_rows"], second["new_rows"]) == (len(expected), 0)
    assert second["already_ingested"] == len(expected)
    for key in FACTS:
        assert second[key] == first[key], key
    (rows,) = store.db.query("SELECT count(*) FROM raw_posters WHERE batch = ?", [manifest.batch])[0]
    assert second["dagster/row_count"] == rows == len(expected)
    assert second["ok"] == sum(s == "ok" for s in expected.values())
    tables = [k for k, v in first.items() if isinstance(v, dg.TableMetadataValue)]
    assert {"quarantine_reasons", "duplicate_files", "sidecar_problem_list"} <= set(tables)
    for key in tables:
        assert _records(second[key]) == _records(first[key]), key
    reasons = {r["file"]: r["reason"] for r in _records(second["quarantine_reasons"])}
    assert reasons["zero_bytes.jpg"] == "empty file (0 bytes)"
    problems = {r["where"]: r["problem"] for r in _records(second["sidecar_problem_list"])}
    assert problems["cmyk.jpg"].startswith("year") and "array" in problems["sidecar line 6"]
    assert second["decoder"] == first["decoder"] != ""
    assert "data:image/jpeg;base64," in second["preview"]
    assert second["preview"] == first["preview"]
    assert list(second)[0] == "preview"  # first in the UI's metadata table


@pytest.mark.parametrize(
    "spec", [s for a in BATCH_ASSETS for s in a.specs], ids=lambda s: s.key.to_user_string()
)
def test_table_assets_declare_the_columns_the_database_has(spec: dg.AssetSpec, store: PosterStore) -> None:
    store.db.ensure_schema()
    name = spec.key.to_user_string()
    meta = spec.metadata
    schema = meta["dagster/column_schema"].schema
    described = store.db.query(f"DESCRIBE {name}")
    assert [c.name for c in schema.columns] == [r[0] for r in described]
    assert [c.type for c in schema.columns] == [r[1] for r in described]
    assert [c.constraints.nullable for c in schema.columns] == [r[2] == "YES" for r in described]
    assert meta["dagster/table_name"] == f"poster_assets.main.{name}"


def test_a_hand_added_partition_fails_once_saying_how_batches_are_made(home: Path) -> None:
    """ "Add a partition" in the UI: no manifest. raw_posters fails with the way out, the steps
    after it are skipped, an extractor run on its own says the same, and `batches abandon`
    removes the partition."""
    store = Store.at()
    resources = {"store": PosterStore(home=str(home)), "models": ModelsResource()}
    with runs.instance() as inst:
        inst.add_dynamic_partitions(BATCHES, ["my-new-batch"])
        result = dg.materialize(
            BATCH_ASSETS,
            partition_key="my-new-batch",
            instance=inst,
            resources=resources,
            raise_on_error=False,
        )
        assert not result.success
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        assert failure.step_key == "raw_posters"
        user = failure.step_failure_data.user_failure_data
        assert user is not None  # a dg.Failure, not a stack trace
        text = user.description
        assert "has no manifest" in text and "FileNotFoundError" not in text
        assert "poster-assets batches abandon my-new-batch" in text
        assert "poster-assets ingest FOLDER" in text and str(home / "inbox") in text
        # The extractors are not executed: no error of their own.
        started = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}
        assert started == {"raw_posters"}

        alone = dg.materialize(
            [poster_extractors],
            selection=[OCR_TEXT],
            partition_key="my-new-batch",
            instance=inst,
            resources=resources,
            raise_on_error=False,
        )
        (failure,) = [e for e in alone.all_events if e.is_step_failure]
        assert failure.step_failure_data.user_failure_data.description == text

    listed = CliRunner().invoke(main, ["batches", "list"])
    assert listed.exit_code == 0, listed.output
    assert "my-new-batch" in listed.output and "has no manifest" in listed.output
    assert "dagster._core" not in listed.output  # the Failure's words, not its class
    retry = CliRunner().invoke(main, ["batches", "retry", "my-new-batch"])
    assert "batches abandon my-new-batch" in retry.output and "batches retry my-new-batch" not in retry.output
    gone = CliRunner().invoke(main, ["batches", "abandon", "my-new-batch", "--yes"])
    assert gone.exit_code == 0, gone.output
    assert "its partition" in gone.output
    with runs.instance() as inst:
        assert not inst.has_dynamic_partition(BATCHES, "my-new-batch")
    assert not store.db_path.exists() or not store.db.query("SELECT 1 FROM raw_posters")
