"""The UI as the front door, checked through its GraphQL endpoint (what the browser asks too)."""

from __future__ import annotations

import pytest

from poster_assets.cli.runs import definitions
from poster_assets_tests.ui.conftest import DEMO_POSTERS
from poster_assets_tests.ui.server import UI

pytestmark = pytest.mark.slow

ASSET_GRAPH = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
CHECKS = """
query Checks($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks { checks { name description executionForLatestMaterialization { status } } }
      }
    }
  }
}"""
JOB_RUNS = """
query JobRuns($location: String!, $job: String!) {
  pipelineOrError(
    params: {repositoryLocationName: $location, repositoryName: "__repository__", pipelineName: $job}
  ) {
    ... on Pipeline { runs { runId status tags { key value } } }
  }
}"""
# What a materialization says: its run, its row count and its markdown previews.
FACTS = """
fragment Facts on MaterializationEvent {
  runId
  metadataEntries {
    label
    __typename
    ... on IntMetadataEntry { intValue }
    ... on MarkdownMetadataEntry { mdStr }
  }
}"""
LATEST = (
    FACTS
    + """
query Latest($key: AssetKeyInput!, $partition: String!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      latestMaterializationByPartition(partitions: [$partition]) {
        ...Facts
      }
    }
  }
}"""
)
LATEST_UNPARTITIONED = (
    FACTS
    + """
query Latest($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        ...Facts
      }
    }
  }
}"""
)
BATCH_ASSETS = (
    "raw_posters",
    "ocr_text",
    "depth_maps",
    "foreground_masks",
    "layer_masks",
    "foreground_embeddings",
)


def _job_runs(ui: UI, job: str) -> list[dict]:
    return ui.graphql(JOB_RUNS, {"location": ui.location, "job": job})["pipelineOrError"]["runs"]


def _batch(ui: UI) -> str:
    runs = _job_runs(ui, "batch_job")
    return next(t["value"] for r in runs for t in r["tags"] if t["key"] == "dagster/partition")


def test_the_ui_loads_the_asset_graph_of_the_definitions(ui: UI) -> None:
    nodes = ui.graphql(ASSET_GRAPH)["assetNodes"]
    shown = {tuple(n["assetKey"]["path"]): {tuple(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
    graph = definitions().resolve_asset_graph()
    expected = {
        tuple(k.path): {tuple(p.path) for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()
    }
    assert shown == expected
    assert ("faiss_index",) in shown and ("poster_assets", "extractions") not in shown


def test_raw_posters_has_its_checks_and_they_ran(ui: UI) -> None:
    node = ui.graphql(CHECKS, {"key": {"path": ["raw_posters"]}})["assetNodeOrError"]
    checks = node["assetChecksOrError"]["checks"]
    assert {"raw_posters_id_present", "raw_posters_status_known"} <= {c["name"] for c in checks}
    for check in checks:
        assert check["description"], check["name"]
        assert check["executionForLatestMaterialization"]["status"] == "SUCCEEDED", check


def test_the_clis_runs_are_listed_on_their_jobs(ui: UI) -> None:
    # `poster-assets demo` ran the batch, the models' observation and the corpus.
    for job in ("batch_job", "corpus_job", "observe_models_job"):
        runs = _job_runs(ui, job)
        assert runs and all(r["status"] == "SUCCESS" for r in runs), (job, runs)


def test_a_run_launched_in_the_ui_succeeds_and_a_rerun_keeps_the_totals(ui: UI) -> None:
    batch = _batch(ui)
    run_id, status, seconds = ui.launch("corpus_job")
    assert status == "SUCCESS", (run_id, ui.log.read_text()[-3000:])
    print(f"\nUI-launched corpus_job, nothing stale: {seconds:.1f} s")
    latest = {}
    for path in (["faiss_index"], ["marts", "poster_annotations"]):
        found = ui.graphql(LATEST_UNPARTITIONED, {"key": {"path": path}})
        (materialization,) = found["assetOrError"]["assetMaterializations"]
        assert materialization["runId"] == run_id, path
        latest["/".join(path)] = {e["label"]: e for e in materialization["metadataEntries"]}
    assert latest["faiss_index"]["dagster/row_count"]["intValue"] > 0
    assert any("data:image" in (e.get("mdStr") or "") for e in latest["faiss_index"].values())
    assert latest["marts/poster_annotations"]["dagster/row_count"]["intValue"] == DEMO_POSTERS
    # A re-run of the batch has nothing to do; its materializations still describe the batch.
    run_id, status, seconds = ui.launch("batch_job", partition=batch)
    assert status == "SUCCESS", run_id
    print(f"UI-launched batch_job, nothing to do: {seconds:.1f} s")
    assert run_id in {r["runId"] for r in _job_runs(ui, "batch_job")}
    for asset in BATCH_ASSETS:
        latest = ui.graphql(LATEST, {"key": {"path": [asset]}, "partition": batch})
        materialization = latest["assetNodeOrError"]["latestMaterializationByPartition"][0]
        assert materialization["runId"] == run_id, asset
        entries = {e["label"]: e for e in materialization["metadataEntries"]}
        assert entries["dagster/row_count"]["intValue"] > 0, asset
        previews = [e for e in entries.values() if "data:image" in (e.get("mdStr") or "")]
        assert previews, f"{asset}: no preview after a re-run"
    raw = ui.graphql(LATEST, {"key": {"path": ["raw_posters"]}, "partition": batch})
    entries = {
        e["label"]: e
        for e in raw["assetNodeOrError"]["latestMaterializationByPartition"][0]["metadataEntries"]
    }
    assert entries["dagster/row_count"]["intValue"] == DEMO_POSTERS
