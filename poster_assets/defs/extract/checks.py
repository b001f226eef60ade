"""Asset checks on the extractors."""

from collections.abc import Iterator

import dagster as dg

from poster_assets.defs.extract.assets import DEPTH_MAPS, FOREGROUND_MASKS, LAYER_MASKS, OCR_TEXT
from poster_assets.defs.metadata import table
from poster_assets.defs.resources import BATCH_POOL, ModelsResource, PosterStore
from poster_assets.extract.evaluate import evaluate
from poster_assets.extract.versions import current_versions

QUALITY_CHECK = "quality_vs_ground_truth"
COVERAGE_CHECK = "current_version_coverage"
DEPTH_CHECK = "sane_depth_statistics"


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            QUALITY_CHECK,
            asset=LAYER_MASKS,
            description="Title text, title box, title layer and foreground against the demo corpus's "
            "ground truth. Warns (does not fail the run) when a target is missed; skipped when no "
            "extracted poster has ground truth (a user's own corpus).",
        )
    ],
    can_subset=True,
    # A batch step: it writes each poster's scores (``layer_scores``) in short transactions.
    pool=BATCH_POOL,
)
def layer_quality_check(
    context: dg.AssetCheckExecutionContext, store: PosterStore, models: ModelsResource
) -> Iterator:
    result = evaluate(store.db, store.blobs, current_versions(models).layers)
    if not result.posters:
        # Yielding nothing leaves the planned check unresolved: the UI shows it as skipped, not green.
        context.log.info("no extracted poster has ground truth: nothing to score")
        return
    verdicts = result.verdicts()
    yield dg.AssetCheckResult(
        check_name=QUALITY_CHECK,
        asset_key=LAYER_MASKS,
        passed=all(verdicts.values()),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "posters_with_ground_truth": result.posters,
            **{name: round(value, 4) for name, value in result.metrics.items()},
            "targets": table(["metric", "value", "target", "verdict"], result.table()),
            "misses": table(
                ["file", "truth", "read"],
                [(r["file"], r["truth"], r["read"]) for r in result.per_poster if not r["exact"]],
                limit=20,
            ),
        },
    )


def _coverage_check(asset: dg.AssetKey) -> dg.AssetChecksDefinition:
    name = asset.to_user_string()

    @dg.asset_check(asset=asset, name=COVERAGE_CHECK, blocking=False)
    def _check(store: PosterStore, models: ModelsResource) -> dg.AssetCheckResult:
        """Every ok poster has a value at the current model version (or a recorded failure)."""
        version = current_versions(models).by_asset()[name]
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
                "missing_by_batch": table(["batch", "posters"], missing),
            },
        )

    return _check


ocr_coverage_check = _coverage_check(OCR_TEXT)
depth_coverage_check = _coverage_check(DEPTH_MAPS)
foreground_coverage_check = _coverage_check(FOREGROUND_MASKS)
layers_coverage_check = _coverage_check(LAYER_MASKS)


@dg.asset_check(asset=DEPTH_MAPS, name=DEPTH_CHECK, blocking=False)
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
            "problems": table(["poster", "version", "problem"], bad),
        },
    )
