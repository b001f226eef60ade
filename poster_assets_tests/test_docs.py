"""The README as a new user reads it: its generated parts match the code."""

from poster_assets.cli.docs import README, asset_graph_mermaid, with_graph
from poster_assets.cli.runs import definitions


def test_the_readme_draws_the_asset_graph_of_the_definitions() -> None:
    text = README.read_text(encoding="utf-8")
    assert with_graph(text, asset_graph_mermaid(definitions())) == text, "run `make docs`"
