"""The four per-poster extractors. Each is a thin loop over the batch's pending posters."""

import dagster as dg
import numpy as np
from PIL import Image

from poster_assets.defs.extract.model_sources import DEPTH_MODELS, FOREGROUND_MODELS, OCR_MODELS, model_key
from poster_assets.defs.extract.resources import ModelsResource
from poster_assets.defs.ingest.assets import raw_posters
from poster_assets.defs.partitions import batch_partitions
from poster_assets.defs.previews import extraction_metadata, image_markdown
from poster_assets.extract import steps
from poster_assets.extract.runner import (
    PosterRef,
    batched,
    guarded,
    load_rgb,
    run_extraction,
)
from poster_assets.storage.resource import PosterStore
from poster_assets.vision.contact_sheet import contact_sheet
from poster_assets.vision.overlays import depth_colormap, extraction_panel, ocr_tile

_PREVIEW_POSTERS = 6


def _progress(context: dg.AssetExecutionContext, asset: str):
    return lambda done, total: context.log.info(f"{asset}: {done}/{total} posters")


def _refs(store: PosterStore, ids: list[str]) -> list[PosterRef]:
    if not ids:
        return []
    rows = store.db.query(
        "SELECT DISTINCT poster_id, original_path, file_name FROM raw_posters WHERE poster_id IN ? "
        "AND status = 'ok' ORDER BY file_name",
        [ids[:_PREVIEW_POSTERS]],
    )
    return [PosterRef(*r) for r in rows]


@dg.asset(
    partitions_def=batch_partitions,
    group_name="extract",
    deps=[raw_posters, *(model_key(n) for n in OCR_MODELS)],
    kinds={"openvino", "duckdb"},
    code_version="ocr-v1",
)
def ocr_text(
    context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
) -> dg.MaterializeResult:
    """Text lines per poster from PP-OCR (rapidocr on OpenVINO): polygon, box, text, confidence,
    reading order and the model versions that read them."""
    engine = models.ocr()

    def many(refs: list[PosterRef]) -> list[steps.Rows]:
        # Posters of a chunk run concurrently, one OpenVINO stream each.
        found = engine.read_many([load_rgb(store.blobs, r) for r in refs])
        return [steps.ocr_rows(r, items, engine.version) for r, items in zip(refs, found, strict=True)]

    stats = run_extraction(
        store.db,
        "ocr_text",
        engine.version,
        context.partition_key,
        batched(many),
        progress=_progress(context, "ocr"),
    )
    extra = {}
    refs = _refs(store, stats.done_ids)
    if refs:
        tiles, captions = [], []
        for ref in refs:
            rgb = load_rgb(store.blobs, ref)
            items = store.db.query(
                "SELECT box, text FROM ocr_text WHERE poster_id = ? AND model_version = ? "
                "ORDER BY line_index",
                [ref.poster_id, engine.version],
            )
            tiles.append(ocr_tile(rgb, [b for b, _ in items]))
            captions.append(items[0][1] if items else "(no text)")
        extra["preview"] = image_markdown(
            contact_sheet(tiles, captions, columns=6, tile_width=160), "OCR boxes"
        )
        extra["engines"] = str(engine.engines)
    return dg.MaterializeResult(metadata=extraction_metadata(stats, extra))


def _dense_asset(kind: str):
    """depth_maps and foreground_masks share everything but the estimator and what they store."""
    model_names = DEPTH_MODELS if kind == "depth" else FOREGROUND_MODELS
    asset_name = "depth_maps" if kind == "depth" else "foreground_masks"
    doc = (
        "Relative monocular depth per poster (MiDaS v2.1 small on OpenVINO, or the heuristic "
        "fallback): a 16-bit PNG (65535 = nearest) plus min/max, histogram and its modes."
        if kind == "depth"
        else "Foreground (subject) probability per poster (U²-Netp on OpenVINO, or GrabCut seeded by "
        "saliency and a border prior): an 8-bit PNG plus area share and bbox."
    )

    @dg.asset(
        name=asset_name,
        partitions_def=batch_partitions,
        group_name="extract",
        deps=[raw_posters, *(model_key(n) for n in model_names)],
        kinds={"openvino", "duckdb"},
        code_version=f"{kind}-v1",
        description=doc,
    )
    def _asset(
        context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
    ) -> dg.MaterializeResult:
        estimator = models.depth() if kind == "depth" else models.foreground()
        if not estimator.neural:
            context.log.warning(f"{asset_name}: using fallback {estimator.version} ({estimator.reason})")
        to_rows = steps.depth_rows if kind == "depth" else steps.foreground_rows

        def many(refs: list[PosterRef]) -> list[steps.Rows]:
            maps = estimator.predict_batch([load_rgb(store.blobs, r) for r in refs])
            return [to_rows(r, m, estimator.version, store.blobs) for r, m in zip(refs, maps, strict=True)]

        stats = run_extraction(
            store.db,
            asset_name,
            estimator.version,
            context.partition_key,
            batched(many),
            progress=_progress(context, kind),
        )
        extra: dict = {"neural": estimator.neural}
        if not estimator.neural:
            extra["fallback_reason"] = estimator.reason or ""
        refs = _refs(store, stats.done_ids)
        if refs:
            table = "depth_maps" if kind == "depth" else "foreground_masks"
            col = "depth_path" if kind == "depth" else "mask_path"
            tiles = []
            for ref in refs:
                (path,) = store.db.query(
                    f"SELECT {col} FROM {table} WHERE poster_id = ? AND model_version = ?",
                    [ref.poster_id, estimator.version],
                )[0]
                if kind == "depth":
                    tiles.append(Image.fromarray(depth_colormap(steps.read_depth(store.blobs, path))))
                else:
                    rgb = load_rgb(store.blobs, ref).astype(np.float32)
                    prob = steps.read_mask(store.blobs, path)[..., None]
                    tiles.append(Image.fromarray((rgb * (0.25 + 0.75 * prob)).astype(np.uint8)))
            extra["preview"] = image_markdown(
                contact_sheet(tiles, [r.file_name for r in refs], columns=6, tile_width=160), asset_name
            )
        return dg.MaterializeResult(metadata=extraction_metadata(stats, extra))

    return _asset


depth_maps = _dense_asset("depth")
foreground_masks = _dense_asset("foreground")


@dg.asset(
    partitions_def=batch_partitions,
    group_name="extract",
    deps=[depth_maps, foreground_masks, ocr_text],
    kinds={"scikit-learn", "duckdb"},
    code_version=steps.LAYERS_METHOD_VERSION,
)
def layer_masks(
    context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
) -> dg.MaterializeResult:
    """Depth layers per poster: K from the depth histogram's modes, K-means over depth cleaned
    with SLIC superpixels; the title layer found from the OCR boxes and the subject layer from
    the foreground mask. One row per layer, with the versions of all three inputs."""
    versions = {
        "depth": models.depth().version,
        "foreground": models.foreground().version,
        "ocr": models.ocr_version(),
    }
    versions["layers"] = steps.layers_version(versions["depth"], versions["foreground"], versions["ocr"])
    panels: list[Image.Image] = []

    def one(ref: PosterRef) -> steps.Rows:
        found = store.db.query(
            "SELECT d.depth_path, f.mask_path FROM depth_maps d JOIN foreground_masks f USING (poster_id) "
            "WHERE poster_id = ? AND d.model_version = ? AND f.model_version = ?",
            [ref.poster_id, versions["depth"], versions["foreground"]],
        )
        if not found:
            raise LookupError("no depth map or foreground mask at the current model versions")
        ocr = store.db.query(
            "SELECT box, text, confidence FROM ocr_text WHERE poster_id = ? AND model_version = ? "
            "ORDER BY line_index",
            [ref.poster_id, versions["ocr"]],
        )
        rgb = load_rgb(store.blobs, ref)
        depth = steps.read_depth(store.blobs, found[0][0])
        fg = steps.read_mask(store.blobs, found[0][1])
        layers, title = steps.compute_layers(rgb, depth, fg, [(list(b), t, c) for b, t, c in ocr])
        if len(panels) < _PREVIEW_POSTERS:
            panels.append(extraction_panel(rgb, depth, layers, title, fg, [b for b, _, _ in ocr]))
        return steps.layer_rows(ref, layers, title, versions, store.blobs)

    stats = run_extraction(
        store.db,
        "layer_masks",
        versions["layers"],
        context.partition_key,
        guarded(one),
        progress=_progress(context, "layers"),
    )
    extra = {f"{k}_version": v for k, v in versions.items()}
    if panels:
        extra["preview"] = image_markdown(
            contact_sheet(panels, columns=2, tile_width=480, tile_height=240), "layers"
        )
    return dg.MaterializeResult(metadata=extraction_metadata(stats, extra))
