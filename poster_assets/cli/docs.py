"""The README's asset graph, drawn from the definitions rather than by hand.

``make docs`` rewrites the block between the markers in README.md; a test fails when the block
and the definitions disagree, so the picture cannot drift from the graph the UI shows.
"""

from __future__ import annotations

import re
import sys

import dagster as dg

from poster_assets.cli.launch import ROOT

README = ROOT / "README.md"
START, END = "<!-- asset-graph:start (make docs) -->", "<!-- asset-graph:end -->"
# Groups left to right in the order data flows through them.
_GROUP_ORDER = ("models", "ingest", "extract", "embed", "search", "sql", "ssl")


def _node(key: dg.AssetKey) -> str:
    return re.sub(r"\W", "_", "__".join(key.path))


def asset_graph_mermaid(defs: dg.Definitions) -> str:
    """A Mermaid flowchart of every asset, boxed by group, with an edge per dependency."""
    graph = defs.resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys())
    groups: dict[str, list[dg.AssetKey]] = {}
    for key in keys:
        groups.setdefault(graph.get(key).group_name or "default", []).append(key)
    order = sorted(groups, key=lambda g: (_GROUP_ORDER.index(g) if g in _GROUP_ORDER else 99, g))
    lines = ["```mermaid", "flowchart LR"]
    for group in order:
        lines.append(f"  subgraph {group}")
        lines += [f'    {_node(k)}["{k.to_user_string()}"]' for k in groups[group]]
        lines.append("  end")
    for key in keys:
        parents = sorted(p for p in graph.get(key).parent_keys if graph.has(p))
        lines += [f"  {_node(p)} --> {_node(key)}" for p in parents]
    lines.append("```")
    return "\n".join(lines)


def with_graph(readme: str, diagram: str) -> str:
    """``readme`` with the text between the markers replaced by ``diagram``."""
    start, end = readme.index(START) + len(START), readme.index(END)
    return f"{readme[:start]}\n{diagram}\n{readme[end:]}"


def main() -> None:
    from poster_assets.cli.runs import definitions

    text = README.read_text(encoding="utf-8")
    updated = with_graph(text, asset_graph_mermaid(definitions()))
    if updated != text:
        README.write_text(updated, encoding="utf-8")
        print(f"rewrote the asset graph in {README}", file=sys.stderr)


if __name__ == "__main__":
    main()
