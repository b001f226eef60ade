"""The similarity indexes over the embeddings: corpus-wide, kept up to date incrementally."""

import dagster as dg
from PIL import Image, ImageOps

from poster_assets.defs.metadata import image_markdown, table, table_definition
from poster_assets.defs.resources import DB_POOL, ModelsResource, PosterStore
from poster_assets.embed.vectors import read_vectors
from poster_assets.extract.versions import current_versions
from poster_assets.search.api import SearchHit, describe
from poster_assets.search.sync import (
    IndexUpdate,
    index_recall,
    refresh_neighbors,
    sync_index,
    vectors_version,
)
from poster_assets.storage.catalog import refresh_catalog
from poster_assets.vision.contact_sheet import contact_sheet

# The preview: the newest posters as queries, each with its nearest neighbours in one kind's index.
_PREVIEW_KIND = "foreground"
_PREVIEW_QUERIES = 3
_PREVIEW_NEIGHBORS = 5
_QUERY_FRAME = (255, 200, 0)


@dg.asset(
    group_name="search",
    deps=[dg.AssetKey("foreground_embeddings")],
    kinds={"faiss", "duckdb"},
    code_version="faiss-index-v1",
    automation_condition=dg.AutomationCondition.eager(),
    pool=DB_POOL,
    metadata=table_definition("poster_neighbors"),
)
def faiss_index(
    context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
) -> dg.MaterializeResult:
    """One FAISS index per current embedding kind (ssl only once an encoder has been trained)
    under `<home>/indexes/<kind>/` (exact below 50k posters, IVF with re-ranking above), kept
    up to date by adding new posters; rebuilt when the model version changes or the saved
    index is missing or unreadable. Also keeps the `poster_neighbors` table: each poster's 10
    most similar posters per kind, updated in place when posters were only added (the new
    posters' lists, and the older lists they enter), rewritten whole otherwise. The preview
    shows the newest posters and their nearest neighbours in the foreground index, with the
    cosine similarity under each.

    The data version is what the indexes are made from (the vectors at the current versions),
    so an update that changed no vector leaves the assets downstream current; then no index
    is saved and `poster_neighbors` is left as it is."""
    refresh_catalog(store.db)  # vectors batch steps left in the lake while the file was busy
    updates, rows = [], []
    meta: dict = {}
    kinds = current_versions(models).kinds
    made_from = vectors_version(store, kinds)
    for kind, version in kinds.items():
        update = sync_index(store, kind, version)
        updates.append(update)
        if update.mode == "build":
            context.log.info(f"{kind}: built a new index of {update.count} posters ({update.reason})")
        elif update.mode == "empty":
            context.log.warning(f"{kind}: {update.reason}; saved index left as it is")
        # Measured when the index is built: an update that only added posters keeps its recall,
        # which the recall check measures again (an exact search over every vector: minutes at 1M).
        recall = round(index_recall(update.index, update.vectors), 4) if update.mode == "build" else None
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
    meta["neighbors"] = refresh_neighbors(store, updates)
    meta["indexes"] = table(["kind", "mode", "posters", "added", "type", "recall@10", "why rebuilt"], rows)
    meta["index_dir"] = dg.MetadataValue.path(str(store.indexes_dir))
    # The table as it now is.
    meta["poster_neighbors_rows"] = store.db.query("SELECT count(*) FROM poster_neighbors")[0][0]
    meta["dagster/row_count"] = meta["poster_neighbors_rows"]
    shown = next((u for u in updates if u.kind == _PREVIEW_KIND and u.index), None)
    if shown:
        with store.db.session():  # the preview's few short reads
            neighbours = _neighbour_rows(store, shown)
        if sheet := _neighbours_sheet(neighbours):
            meta = {"preview": image_markdown(sheet, f"nearest neighbours ({shown.kind})"), **meta}
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(made_from))


def _neighbour_rows(store: PosterStore, update: IndexUpdate) -> list[list[SearchHit]]:
    """For the newest posters in ``update``'s index: the poster (score 1) and its nearest
    neighbours in that index, best first, as search describes them."""
    index = update.index
    if index is None:
        return []
    newest = store.db.query(
        "SELECT r.poster_id FROM raw_posters r JOIN foreground_embeddings e USING (poster_id) "
        "WHERE r.status = 'ok' AND e.kind = ? AND e.model_version = ? "
        "ORDER BY r.ingested_at DESC, r.file_name LIMIT ?",
        [update.kind, update.version, _PREVIEW_QUERIES],
    )
    # Only the queries' vectors: ``update.vectors`` would copy every one of them.
    ids, vectors = read_vectors(store, update.kind, update.version, [q for (q,) in newest if q in index])
    vector_of = dict(zip(ids, vectors, strict=True))
    out = []
    for query in (q for (q,) in newest if q in vector_of):  # newest first
        vector = vector_of[query]
        scores, hits = index.search(vector[None, :], min(_PREVIEW_NEIGHBORS + 1, index.count))
        ranked = [(pid, float(s)) for pid, s in zip(hits[0], scores[0], strict=False) if pid != query]
        out.append(describe([(query, 1.0), *ranked[:_PREVIEW_NEIGHBORS]], store))
    return out


def _neighbours_sheet(rows: list[list[SearchHit]]) -> Image.Image | None:
    """One row per query: its thumbnail, then each neighbour's with the similarity under it."""
    tiles: list[Image.Image] = []
    captions: list[str] = []
    for hits in rows:
        for i, hit in enumerate(hits):
            tile = Image.new("RGB", (2, 3), (64, 64, 64))
            if hit.thumbnail_path is not None:
                with Image.open(hit.thumbnail_path) as im:
                    tile = im.convert("RGB")
            if i == 0:  # the query, framed: a row reads "this poster, and the posters like it"
                tile = ImageOps.expand(tile, 8, _QUERY_FRAME)
            tiles.append(tile)
            captions.append(f"query: {hit.file_name}" if i == 0 else f"{hit.score:.3f} {hit.file_name}")
        # A corpus smaller than a row leaves it short: pad it, so the next query starts a row.
        while len(tiles) % (_PREVIEW_NEIGHBORS + 1):
            tiles.append(Image.new("RGB", (2, 3), (32, 32, 32)))
            captions.append("")
    if not tiles:
        return None
    return contact_sheet(tiles, captions, columns=_PREVIEW_NEIGHBORS + 1, tile_width=140)
