"""Asset checks on the extractors."""

import dagster as dg

from poster_assets.defs.extract.assets import layer_masks
from poster_assets.defs.previews import markdown_table
from poster_assets.extract.evaluate import evaluate
from poster_assets.storage.resource import PosterStore

QUALITY_CHECK = "quality_vs_ground_truth"


@dg.asset_check(asset=layer_masks, name=QUALITY_CHECK, blocking=False)
def layer_quality_check(store: PosterStore) -> dg.AssetCheckResult:
    """Title text, title box, title layer and foreground against the demo corpus's ground truth.
    Warns (does not fail the run) when a target is missed; passes trivially without ground truth."""
    result = evaluate(store.db, store.blobs)
    if not result.posters:
        return dg.AssetCheckResult(passed=True, metadata={"posters_with_ground_truth": 0})
    verdicts = result.verdicts()
    return dg.AssetCheckResult(
        passed=all(verdicts.values()),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "posters_with_ground_truth": result.posters,
            **{name: round(value, 4) for name, value in result.metrics.items()},
            "targets": markdown_table(["metric", "value", "target", "verdict"], result.table()),
            "misses": markdown_table(
                ["file", "truth", "read"],
                [(r["file"], r["truth"], r["read"]) for r in result.per_poster if not r["exact"]],
                limit=20,
            ),
        },
    )
