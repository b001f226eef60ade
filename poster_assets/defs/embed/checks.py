"""Asset checks on the embeddings and the similarity indexes."""

import dagster as dg

from poster_assets.defs.embed.assets import faiss_index, foreground_embeddings
from poster_assets.defs.previews import markdown_table
from poster_assets.extract import embed_steps
from poster_assets.search.embed import EMBEDDING_KINDS
from poster_assets.search.index import IndexLoadError, PosterIndex
from poster_assets.storage.resource import PosterStore

NORM_CHECK = "unit_norm_and_expected_dims"
RECALL_CHECK = "recall_at_10_vs_exact"
_NORM_TOLERANCE = 1e-3


@dg.asset_check(asset=foreground_embeddings, name=NORM_CHECK, blocking=False)
def embedding_norm_check(store: PosterStore) -> dg.AssetCheckResult:
    """Every stored vector has length 1 (within 1e-3), `dim` matches its length, and each known
    kind has its model's width (1280 for EfficientNet-Lite0, 768 for the 16x16 pixel baseline)."""
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
        ("(all)", kind, "", f"{n} vectors of dim {dim}, expected {embed_steps.KIND_DIMS[kind]}")
        for kind, dim, n in per_kind
        if kind in embed_steps.KIND_DIMS and dim != embed_steps.KIND_DIMS[kind]
    ]
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={
            "vectors": sum(n for _, _, n in per_kind),
            "bad": len(bad),
            "by_kind": markdown_table(["kind", "dim", "vectors"], per_kind),
            "problems": markdown_table(["poster", "kind", "version", "problem"], bad),
        },
    )


@dg.asset_check(asset=faiss_index, name=RECALL_CHECK, blocking=False)
def index_recall_check(store: PosterStore) -> dg.AssetCheckResult:
    """Each saved index loads, its rows match the table's vectors at its version, and its
    recall@10 against exact search on held-out queries is at least 0.95. Recomputed from the
    files on disk rather than read from the materialization, so it checks what search uses."""
    rows, passed = [], True
    # The ssl index exists only once an encoder has been trained.
    ssl_folder = embed_steps.index_dir(store.home_path, embed_steps.SSL_KIND)
    kinds = [*EMBEDDING_KINDS, *([embed_steps.SSL_KIND] if ssl_folder.exists() else [])]
    for kind in kinds:
        folder = embed_steps.index_dir(store.home_path, kind)
        try:
            index = PosterIndex.load(folder)
        except IndexLoadError as exc:
            passed = False
            rows.append((kind, 0, "", None, f"cannot load: {exc}"))
            continue
        ids, vectors = embed_steps.read_vectors(store.db, kind, index.model_version)
        row_of = {pid: i for i, pid in enumerate(ids)}
        missing = [pid for pid in index.ids if pid not in row_of]
        if missing:
            passed = False
            rows.append((kind, index.count, index.spec.kind, None, f"{len(missing)} ids not in the table"))
            continue
        recall = embed_steps.index_recall(index, vectors[[row_of[p] for p in index.ids]])
        ok = recall >= embed_steps.RECALL_TARGET
        passed = passed and ok
        rows.append((kind, index.count, index.spec.kind, round(recall, 4), "" if ok else "below target"))
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "target": embed_steps.RECALL_TARGET,
            **{f"{kind}_recall_at_10": r for kind, _, _, r, _ in rows if r is not None},
            "indexes": markdown_table(["kind", "posters", "type", "recall@10", "problem"], rows),
        },
    )
