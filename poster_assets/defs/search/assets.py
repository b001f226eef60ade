"""The similarity indexes over the embeddings: corpus-wide, kept up to date incrementally."""

import dagster as dg

from poster_assets.defs.metadata import table
from poster_assets.defs.resources import DB_POOL, ModelsResource, PosterStore
from poster_assets.extract.versions import current_versions
from poster_assets.search.sync import index_recall, sync_index, write_neighbors


@dg.asset(
    group_name="search",
    deps=[dg.AssetKey("foreground_embeddings")],
    kinds={"faiss", "duckdb"},
    code_version="faiss-index-v1",
    automation_condition=dg.AutomationCondition.eager(),
    pool=DB_POOL,
)
def faiss_index(
    context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
) -> dg.MaterializeResult:
    """One FAISS index per current embedding kind (ssl only once an encoder has been trained)
    under `<home>/indexes/<kind>/` (exact below 50k posters, IVF with re-ranking above), kept
    up to date by adding new posters; rebuilt when the model version changes or the saved
    index is missing or unreadable. Also rewrites the `poster_neighbors` table: each poster's
    10 most similar posters per kind."""
    updates, rows = [], []
    meta: dict = {}
    for kind, version in current_versions(models).kinds.items():
        update = sync_index(store, kind, version)
        updates.append(update)
        if update.mode == "build":
            context.log.info(f"{kind}: built a new index of {update.count} posters ({update.reason})")
        elif update.mode == "empty":
            context.log.warning(f"{kind}: {update.reason}; saved index left as it is")
        recall = round(index_recall(update.index, update.vectors), 4) if update.index else None
        index_type = update.index.spec.kind if update.index else ""
        meta[f"{kind}_mode"] = update.mode
        meta[f"{kind}_count"] = update.count
        meta[f"{kind}_added"] = update.added
        meta[f"{kind}_index_type"] = index_type
        meta[f"{kind}_model_version"] = update.version
        if recall is not None:
            meta[f"{kind}_recall_at_10"] = recall
        if update.reason:
            meta[f"{kind}_reason"] = update.reason
        rows.append((kind, update.mode, update.count, update.added, index_type, recall, update.reason))
    meta["poster_neighbors_rows"] = write_neighbors(store, updates)
    meta["indexes"] = table(["kind", "mode", "posters", "added", "type", "recall@10", "why rebuilt"], rows)
    meta["index_dir"] = dg.MetadataValue.path(str(store.indexes_dir))
    return dg.MaterializeResult(metadata=meta)
