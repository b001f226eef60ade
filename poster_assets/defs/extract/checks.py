"""Asset checks on the extractors."""

import dagster as dg

from poster_assets.defs.extract.assets import depth_maps, foreground_masks, layer_masks, ocr_text
from poster_assets.defs.extract.resources import ModelsResource
from poster_assets.defs.previews import markdown_table
from poster_assets.extract.evaluate import evaluate
from poster_assets.extract.steps import layers_version
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


COVERAGE_CHECK = "current_version_coverage"


def _coverage_check(asset_def: dg.AssetsDefinition, version_of) -> dg.AssetChecksDefinition:
    name = asset_def.key.to_user_string()

    @dg.asset_check(asset=asset_def, name=COVERAGE_CHECK, blocking=False)
    def _check(store: PosterStore, models: ModelsResource) -> dg.AssetCheckResult:
        """Every ok poster has a value at the current model version (or a recorded failure)."""
        version = version_of(models)
        missing = store.db.query(
            """
            SELECT r.batch, count(DISTINCT r.poster_id) FROM raw_posters r
            LEFT JOIN extractions e ON e.poster_id = r.poster_id AND e.asset = ? AND e.model_version = ?
            WHERE r.status = 'ok' AND e.poster_id IS NULL GROUP BY ALL ORDER BY 1
            """,
            [name, version],
        )
        failed = store.db.query(
            "SELECT count(*) FROM extractions WHERE asset = ? AND model_version = ? AND status = 'failed'",
            [name, version],
        )[0][0]
        n_missing = sum(n for _, n in missing)
        return dg.AssetCheckResult(
            passed=n_missing == 0 and failed == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "model_version": version,
                "missing": n_missing,
                "failed": failed,
                "missing_by_batch": markdown_table(["batch", "posters"], missing),
            },
        )

    return _check


coverage_checks = [
    _coverage_check(ocr_text, lambda m: m.ocr_version()),
    _coverage_check(depth_maps, lambda m: m.depth().version),
    _coverage_check(foreground_masks, lambda m: m.foreground().version),
    _coverage_check(
        layer_masks, lambda m: layers_version(m.depth().version, m.foreground().version, m.ocr_version())
    ),
]


@dg.asset_check(asset=depth_maps, name="sane_depth_statistics", blocking=False)
def depth_sanity_check(store: PosterStore) -> dg.AssetCheckResult:
    """Depth maps are not flat, their histograms sum to one and their modes lie in [0, 1]."""
    bad = store.db.query(
        """
        SELECT poster_id, model_version,
               CASE WHEN depth_max <= depth_min THEN 'flat depth map'
                    WHEN abs(list_sum(histogram::DOUBLE[]) - 1) > 1e-6 THEN 'histogram does not sum to 1'
                    WHEN len(modes) = 0 THEN 'no histogram mode'
                    WHEN list_min(modes) < 0 OR list_max(modes) > 1 THEN 'mode outside [0, 1]'
                    WHEN isnan(depth_mean) OR depth_mean NOT BETWEEN 0 AND 1 THEN 'mean outside [0, 1]'
               END AS problem
        FROM depth_maps WHERE problem IS NOT NULL
        """
    )
    total = store.db.query("SELECT count(*) FROM depth_maps")[0][0]
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={
            "depth_maps": total,
            "bad": len(bad),
            "problems": markdown_table(["poster", "version", "problem"], bad),
        },
    )
