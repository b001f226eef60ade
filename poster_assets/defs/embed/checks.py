"""Asset checks on the stored embeddings."""

import dagster as dg

from poster_assets.defs.embed.assets import foreground_embeddings
from poster_assets.defs.metadata import table
from poster_assets.defs.resources import PosterStore
from poster_assets.embed.vectors import KIND_DIMS

NORM_CHECK = "unit_norm_and_expected_dims"
_NORM_TOLERANCE = 1e-3


@dg.asset_check(asset=foreground_embeddings, name=NORM_CHECK, blocking=False)
def embedding_norm_check(store: PosterStore) -> dg.AssetCheckResult:
    """Every stored vector has length 1 (within 1e-3), `dim` matches its length, and each known
    kind has its model's width (1280 for EfficientNet-Lite0, 768 for the 16x16 pixel baseline,
    128 for the SSL encoder)."""
    bad = store.db.query(
        """
        SELECT poster_id, kind, model_version,
               CASE WHEN len(embedding) <> dim THEN format('length {} but dim {}', len(embedding), dim)
                    WHEN abs(sqrt(list_inner_product(embedding, embedding)) - 1) > ?
                         OR isnan(list_inner_product(embedding, embedding))
                    THEN format('norm {:.6f}', sqrt(list_inner_product(embedding, embedding)))
               END AS problem
        FROM foreground_embeddings WHERE problem IS NOT NULL ORDER BY ALL
        """,
        [_NORM_TOLERANCE],
    )
    per_kind = store.db.query(
        "SELECT kind, dim, count(*) FROM foreground_embeddings GROUP BY ALL ORDER BY ALL"
    )
    bad += [
        ("(all)", kind, "", f"{n} vectors of dim {dim}, expected {KIND_DIMS[kind]}")
        for kind, dim, n in per_kind
        if kind in KIND_DIMS and dim != KIND_DIMS[kind]
    ]
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={
            "vectors": sum(n for _, _, n in per_kind),
            "bad": len(bad),
            "by_kind": table(["kind", "dim", "vectors"], per_kind),
            "problems": table(["poster", "kind", "version", "problem"], bad),
        },
    )
