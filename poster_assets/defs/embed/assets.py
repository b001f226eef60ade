"""Embeddings per poster, partitioned by batch like the extractors they build on."""

import dagster as dg
from PIL import Image

from poster_assets.defs.batches import require_batch
from poster_assets.defs.facts import current_posters, extraction_facts
from poster_assets.defs.metadata import extraction_metadata, image_markdown, table_definition
from poster_assets.defs.models.sources import model_key
from poster_assets.defs.partitions import batch_partitions
from poster_assets.defs.resources import BATCH_POOL, ModelsResource, PosterStore
from poster_assets.embed.kinds import foreground_crop
from poster_assets.embed.vectors import EMBEDDINGS_TABLE, embed_chunk, stored_masks
from poster_assets.extract.runner import ExtractionStats, PosterRef, Rows, batched, load_rgb, run_extraction
from poster_assets.extract.versions import EMBEDDINGS_METHOD, CurrentVersions, current_versions
from poster_assets.vision.contact_sheet import contact_sheet

# The promoted SSL encoder (defs/ssl): a re-training marks the embeddings stale, and only the
# ssl kind is then recomputed. It is upstream, but not in batch_job, which never trains.
CURRENT_ENCODER = dg.AssetKey(["models", "ssl_encoder"])
_PREVIEW_POSTERS = 6


@dg.asset(
    partitions_def=batch_partitions,
    group_name="embed",
    deps=[
        dg.AssetKey("raw_posters"),
        dg.AssetKey("foreground_masks"),
        model_key("efficientnet-lite0"),
        CURRENT_ENCODER,
    ],
    kinds={"openvino", "duckdb"},
    code_version=EMBEDDINGS_METHOD,
    pool=BATCH_POOL,
    metadata=table_definition(EMBEDDINGS_TABLE),
)
def foreground_embeddings(
    context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
) -> dg.MaterializeResult:
    """L2-normalised vectors per poster and kind: `foreground` (the subject cropped to its
    mask's box, background blurred away), `poster` (the whole poster) and `pixels` (a 16x16
    thumbnail, the baseline), from EfficientNet-Lite0, and `ssl` (the foreground crop through
    the promoted `poster_encoder`) once one exists. Each kind carries its own version, so a new
    foreground model re-embeds only the crops and a re-trained encoder only the ssl kind."""
    require_batch(store, context.partition_key)
    current = current_versions(models)

    def many(refs: list[PosterRef]) -> list[Rows]:
        result = embed_chunk(store, refs, models, current)
        return [result.rows[r.poster_id] for r in refs]

    batch = context.partition_key
    stats = run_extraction(
        store.db,
        EMBEDDINGS_TABLE,
        current.embeddings,
        batch,
        batched(many),
        progress=lambda done, total: context.log.info(f"embeddings: {done}/{total} posters"),
    )
    with store.db.session():  # the facts and the preview: a few short reads
        return dg.MaterializeResult(metadata=_metadata(store, batch, current, stats))


def _metadata(store: PosterStore, batch: str, current: CurrentVersions, stats: ExtractionStats) -> dict:
    """The batch's embeddings as the table holds them now, and a preview of the foreground crops."""
    facts = extraction_facts(store, EMBEDDINGS_TABLE, current.embeddings, batch, kinds=current.kinds)
    counts = dict(
        store.db.query(
            "SELECT kind, count(*) FROM foreground_embeddings e JOIN raw_posters r USING (poster_id) "
            "WHERE r.batch = ? AND r.status = 'ok' AND list_contains(?, kind || '=' || e.model_version) "
            "GROUP BY ALL",
            [batch, [f"{k}={v}" for k, v in current.kinds.items()]],
        )
    )
    preview = None
    if refs := current_posters(store, EMBEDDINGS_TABLE, current.embeddings, batch, _PREVIEW_POSTERS):
        # The foreground kind's input, from the stored mask, as embed_chunk cropped it.
        masks = stored_masks(store, [r.poster_id for r in refs], current.foreground)
        crops = [
            (Image.fromarray(foreground_crop(load_rgb(store.blobs, r), masks[r.poster_id])), r.file_name)
            for r in refs
            if r.poster_id in masks
        ]
        if crops:
            preview = image_markdown(
                contact_sheet([p for p, _ in crops], [c for _, c in crops], columns=6, tile_width=160),
                "foreground crops",
            )
    extra = {
        **{f"{k}_version": v for k, v in current.kinds.items()},
        **{f"{k}_vectors_in_batch": int(counts.get(k, 0)) for k in current.kinds},
    }
    return extraction_metadata(facts, stats, extra, preview)
