"""The UI in a real browser: Debian's ``chromium`` driven by Playwright (``make ui-check``).

Opens the asset graph, an extractor's latest materialization and a run page, and saves a
screenshot of each (``$POSTER_ASSETS_SCREENSHOTS``, default a temporary folder) for a person
to look at; the assertions are on what the page says.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from poster_assets_tests.ui.server import UI

pytestmark = [pytest.mark.slow, pytest.mark.browser]

LATEST_RUN = """
query Runs($location: String!) {
  pipelineOrError(
    params: {repositoryLocationName: $location, repositoryName: "__repository__", pipelineName: "batch_job"}
  ) { ... on Pipeline { runs(limit: 1) { runId } } }
}"""
_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def page(ui: UI):
    playwright = pytest.importorskip("playwright.sync_api", reason="`make ui-check` installs Playwright")
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: `make ui-check` installs it"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(_TIMEOUT_MS)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("POSTER_ASSETS_SCREENSHOTS")
    out = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _open(page, url: str) -> None:
    page.goto(url)
    # A new user's first visit asks to join the community; a person clicks Skip.
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:  # noqa: BLE001 - no dialog this time
        pass


def _shoot(page, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"\nscreenshot: {path}")
    return path


def test_the_asset_graph_shows_every_group(ui: UI, page, shots: Path) -> None:
    # The global lineage page starts with every group collapsed; an asset's lineage at full
    # depth draws the whole graph, every asset connected to the marts.
    _open(
        page, f"{ui.url}/assets/marts/poster_annotations?view=lineage&lineageScope=neighbors&lineageDepth=20"
    )
    for name in (
        "raw_posters",
        "ocr_text",
        "layer_masks",
        "faiss_index",
        "poster_annotations",
        "ssl_encoder",
    ):
        page.get_by_text(name, exact=True).first.wait_for()
    assert _shoot(page, shots, "asset-graph").stat().st_size > 20_000


def test_an_extractors_latest_materialization_shows_its_facts_and_preview(ui: UI, page, shots: Path) -> None:
    _open(page, f"{ui.url}/assets/layer_masks?view=events")
    for label in ("model_version", "with_current_value", "dagster/row_count", "depth_version"):
        page.get_by_text(label, exact=True).first.wait_for()
    assert _shoot(page, shots, "layer_masks-latest").stat().st_size > 20_000
    # Dagster shows markdown over 1,000 characters (every picture) behind this link.
    page.get_by_text("[Show Markdown]").first.click()
    preview = page.get_by_role("dialog").locator("img").first
    preview.wait_for()
    assert preview.evaluate("img => img.naturalWidth") > 300
    assert _shoot(page, shots, "layer_masks-preview").stat().st_size > 50_000


def test_a_run_page_shows_the_run(ui: UI, page, shots: Path) -> None:
    runs = ui.graphql(LATEST_RUN, {"location": ui.location})["pipelineOrError"]["runs"]
    _open(page, f"{ui.url}/runs/{runs[0]['runId']}")
    page.get_by_text("Success", exact=False).first.wait_for()
    page.get_by_text("raw_posters").first.wait_for()
    assert _shoot(page, shots, "batch_job-run").stat().st_size > 20_000
