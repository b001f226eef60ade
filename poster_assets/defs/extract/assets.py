"""The four per-poster extractors. Each is a thin loop over the batch's pending posters.

What a materialization says (totals, failures, rows, the preview) is read back from the database
after the run (``defs.facts``): the partition as it is, the same after a re-run that had nothing
to do. The preview shows the batch's first posters that have a current value.
"""

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import numpy as np
from PIL import Image

from poster_assets.defs.batches import require_batch
from poster_assets.defs.facts import current_posters, extraction_facts
from poster_assets.defs.metadata import extraction_metadata, image_markdown, table_definition
from poster_assets.defs.models.sources import model_key
from poster_assets.defs.partitions import batch_partitions
from poster_assets.defs.resources import DB_POOL, ModelsResource, PosterStore
from poster_assets.extract import rows
from poster_assets.extract.runner import PosterRef, batched, guarded, load_rgb, run_extraction
from poster_assets.extract.versions import LAYERS_METHOD, CurrentVersions, current_versions
from poster_assets.models.dense import DenseEstimator
from poster_assets.models.foreground import FOREGROUND_MODELS
from poster_assets.models.hub import Models
from poster_assets.models.ocr import OCR_MODELS
from poster_assets.storage.codecs import decode_depth, decode_labels, decode_mask
from poster_assets.vision.contact_sheet import contact_sheet
from poster_assets.vision.overlays import (
    depth_colormap,
    extraction_panel,
    layer_legend_items,
    ocr_tile,
    with_legend,
)
from poster_assets.vision.roles import LayerInfo

RAW_POSTERS = dg.AssetKey("raw_posters")
_PREVIEW_POSTERS = 6


def _progress(context: dg.AssetExecutionContext, asset: str) -> Callable[[int, int], None]:
    return lambda done, total: context.log.info(f"{asset}: {done}/{total} posters")


@dg.asset(
    partitions_def=batch_partitions,
    group_name="extract",
    deps=[RAW_POSTERS, *(model_key(n) for n in OCR_MODELS)],
    kinds={"openvino", "duckdb"},
    code_version="ocr-v1",
    pool=DB_POOL,
    metadata=table_definition("ocr_text"),
)
def ocr_text(
    context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
) -> dg.MaterializeResult:
    """Text lines per poster from PP-OCR (rapidocr on OpenVINO): polygon, box, text, confidence,
    reading order and the model versions that read them."""
    require_batch(store, context.partition_key)
    engine = models.ocr()

    def many(refs: list[PosterRef]) -> list[rows.Rows]:
        # Posters of a chunk run concurrently, one OpenVINO stream each.
        found = engine.read_many([load_rgb(store.blobs, r) for r in refs])
        return [rows.ocr_rows(r, items, engine.version) for r, items in zip(refs, found, strict=True)]

    stats = run_extraction(
        store.db,
        "ocr_text",
        engine.version,
        context.partition_key,
        batched(many),
        progress=_progress(context, "ocr"),
    )
    facts = extraction_facts(store, "ocr_text", engine.version, context.partition_key)
    preview = None
    if refs := current_posters(store, "ocr_text", engine.version, context.partition_key, _PREVIEW_POSTERS):
        tiles, captions = [], []
        for ref in refs:
            items = store.db.query(
                "SELECT box, text FROM ocr_text WHERE poster_id = ? AND model_version = ? "
                "ORDER BY line_index",
                [ref.poster_id, engine.version],
            )
            tiles.append(ocr_tile(load_rgb(store.blobs, ref), [b for b, _ in items]))
            captions.append(items[0][1] if items else "(no text)")
        preview = image_markdown(contact_sheet(tiles, captions, columns=6, tile_width=160), "OCR boxes")
    extra = {"engines": str(engine.engines)}
    return dg.MaterializeResult(metadata=extraction_metadata(facts, stats, extra, preview))


@dataclass(frozen=True)
class DenseSpec:
    """What tells depth_maps and foreground_masks apart: an image-to-map network (or its
    classical fallback), the rows it stores, and how one stored map is drawn in the preview."""

    name: str
    models: tuple[str, ...]  # registry names of the networks it may use, preferred first
    description: str
    code_version: str
    estimator: Callable[[Models], DenseEstimator]
    to_rows: Callable[..., rows.Rows]
    path_column: str
    tile: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (poster rgb, stored file path) -> rgb


def _depth_tile(rgb: np.ndarray, path) -> np.ndarray:
    return depth_colormap(decode_depth(path))


def _foreground_tile(rgb: np.ndarray, path) -> np.ndarray:
    prob = decode_mask(path)[..., None]
    return (rgb.astype(np.float32) * (0.25 + 0.75 * prob)).astype(np.uint8)


def dense_asset(spec: DenseSpec) -> dg.AssetsDefinition:
    @dg.asset(
        name=spec.name,
        partitions_def=batch_partitions,
        group_name="extract",
        deps=[RAW_POSTERS, *(model_key(m) for m in spec.models)],
        kinds={"openvino", "duckdb"},
        code_version=spec.code_version,
        description=spec.description,
        pool=DB_POOL,
        metadata=table_definition(spec.name),
    )
    def _asset(
        context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
    ) -> dg.MaterializeResult:
        require_batch(store, context.partition_key)
        estimator = spec.estimator(models)
        if not estimator.neural:
            context.log.warning(f"{spec.name}: using fallback {estimator.version} ({estimator.reason})")

        def many(refs: list[PosterRef]) -> list[rows.Rows]:
            maps = estimator.predict_batch([load_rgb(store.blobs, r) for r in refs])
            return [
                spec.to_rows(r, m, estimator.version, store.blobs) for r, m in zip(refs, maps, strict=True)
            ]

        batch = context.partition_key
        stats = run_extraction(
            store.db,
            spec.name,
            estimator.version,
            batch,
            batched(many),
            progress=_progress(context, spec.name),
        )
        facts = extraction_facts(store, spec.name, estimator.version, batch)
        extra: dict = {"neural": estimator.neural}
        if not estimator.neural:
            extra["fallback_reason"] = estimator.reason or ""
        preview = None
        if refs := current_posters(store, spec.name, estimator.version, batch, _PREVIEW_POSTERS):
            tiles = []
            for ref in refs:
                ((path,),) = store.db.query(
                    f"SELECT {spec.path_column} FROM {spec.name} WHERE poster_id = ? AND model_version = ?",
                    [ref.poster_id, estimator.version],
                )
                tiles.append(
                    Image.fromarray(spec.tile(load_rgb(store.blobs, ref), store.blobs.abspath(path)))
                )
            preview = image_markdown(
                contact_sheet(tiles, [r.file_name for r in refs], columns=6, tile_width=160), spec.name
            )
        return dg.MaterializeResult(metadata=extraction_metadata(facts, stats, extra, preview))

    return _asset


DEPTH = DenseSpec(
    name="depth_maps",
    models=("midas-small",),
    description="Relative monocular depth per poster (MiDaS v2.1 small on OpenVINO, or the heuristic "
    "fallback): a 16-bit PNG (65535 = nearest) plus min/max, histogram and its modes.",
    code_version="depth-v1",
    estimator=Models.depth,
    to_rows=rows.depth_rows,
    path_column="depth_path",
    tile=_depth_tile,
)
FOREGROUND = DenseSpec(
    name="foreground_masks",
    models=FOREGROUND_MODELS,
    description="Foreground (subject) probability per poster (IS-Net when pulled, else U²-Netp, on "
    "OpenVINO; or GrabCut seeded by saliency and a border prior): an 8-bit PNG plus area share and bbox.",
    code_version="foreground-v1",
    estimator=Models.foreground,
    to_rows=rows.foreground_rows,
    path_column="mask_path",
    tile=_foreground_tile,
)
depth_maps = dense_asset(DEPTH)
foreground_masks = dense_asset(FOREGROUND)


@dg.asset(
    partitions_def=batch_partitions,
    group_name="extract",
    deps=[depth_maps, foreground_masks, ocr_text],
    kinds={"opencv", "duckdb"},
    code_version=LAYERS_METHOD,
    pool=DB_POOL,
    metadata=table_definition("layer_masks"),
)
def layer_masks(
    context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
) -> dg.MaterializeResult:
    """Layers per poster fused from its three inputs (``vision.fusion``): the title layer is the
    title's ink (from the OCR boxes), the subject layer the foreground mask, extended by depth
    where depth clearly separates the subject and the mask stops inside a depth segment, and
    the rest depth bands (K-means, K from the histogram's modes), the farthest the background.
    One row per layer, with the versions of all three inputs."""
    require_batch(store, context.partition_key)
    current = current_versions(models)
    versions = {
        "depth": current.depth,
        "foreground": current.foreground,
        "ocr": current.ocr,
        "layers": current.layers,
    }

    def one(ref: PosterRef) -> rows.Rows:
        inputs = _layer_inputs(store, ref, current)
        if inputs is None:
            raise LookupError("no depth map or foreground mask at the current model versions")
        rgb, depth, fg, ocr = inputs
        layers, title = rows.compute_layers(rgb, depth, fg, ocr)
        return rows.layer_rows(ref, layers, title, versions, store.blobs)

    batch = context.partition_key
    stats = run_extraction(
        store.db, "layer_masks", current.layers, batch, guarded(one), progress=_progress(context, "layers")
    )
    facts = extraction_facts(store, "layer_masks", current.layers, batch)
    preview = None
    if refs := current_posters(store, "layer_masks", current.layers, batch, _PREVIEW_POSTERS):
        panels = [_stored_layer_panel(store, ref, current) for ref in refs]
        sheet = contact_sheet(
            [p for p in panels if p is not None], columns=2, tile_width=480, tile_height=240
        )
        preview = image_markdown(with_legend(sheet, layer_legend_items()), "layers")
    extra = {f"{k}_version": v for k, v in versions.items()}
    return dg.MaterializeResult(metadata=extraction_metadata(facts, stats, extra, preview))


OcrItems = list[tuple[list[int], str, float]]


def _layer_inputs(
    store: PosterStore, ref: PosterRef, current: CurrentVersions
) -> tuple[np.ndarray, np.ndarray, np.ndarray, OcrItems] | None:
    """(rgb, depth, foreground probability, OCR items) of a poster at the current versions, or
    None when its depth map or foreground mask is missing."""
    found = store.db.query(
        "SELECT d.depth_path, f.mask_path FROM depth_maps d JOIN foreground_masks f USING (poster_id) "
        "WHERE poster_id = ? AND d.model_version = ? AND f.model_version = ?",
        [ref.poster_id, current.depth, current.foreground],
    )
    if not found:
        return None
    ocr = store.db.query(
        "SELECT box, text, confidence FROM ocr_text WHERE poster_id = ? AND model_version = ? "
        "ORDER BY line_index",
        [ref.poster_id, current.ocr],
    )
    return (
        load_rgb(store.blobs, ref),
        decode_depth(store.blobs.abspath(found[0][0])),
        decode_mask(store.blobs.abspath(found[0][1])),
        [(list(b), t, c) for b, t, c in ocr],
    )


def _stored_layer_panel(store: PosterStore, ref: PosterRef, current: CurrentVersions) -> Image.Image | None:
    """The preview panel of a poster's stored layers (its label PNG and rows), drawn as the
    layers were when they were computed."""
    inputs = _layer_inputs(store, ref, current)
    layers = store.db.query(
        "SELECT layer_index, depth_rank, area_fraction, bbox, role, mean_depth, title_box, labels_path "
        "FROM layer_masks WHERE poster_id = ? AND model_version = ? ORDER BY layer_index",
        [ref.poster_id, current.layers],
    )
    if inputs is None or not layers:
        return None
    rgb, depth, fg, ocr = inputs
    labels = decode_labels(store.blobs.abspath(layers[0][-1]))
    infos = [
        LayerInfo(i, rank, area, list(bbox), role, mask=labels == i, mean_depth=mean)
        for i, rank, area, bbox, role, mean, _, _ in layers
    ]
    title = next((box for *_, box, _ in layers if box), None)
    return extraction_panel(rgb, depth, infos, title, fg, [b for b, _, _ in ocr])
