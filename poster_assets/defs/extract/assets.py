"""The four per-poster extractors, computed together: one subsettable multi-asset over
``extract.pipeline``'s pass, which decodes each poster once, runs OCR beside the depth and
foreground networks and fuses the layers from their results in memory. Any subset of the four
(one asset in the UI, the layers after a method change) runs just that subset.

What each materialization says (totals, failures, rows, the preview) is read back from the
database after the run (``defs.facts``): the partition as it is, the same after a re-run that had
nothing to do. The preview shows the batch's first posters that have a current value.
"""

import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import dagster as dg
import numpy as np
from PIL import Image

from poster_assets.defs.batches import require_batch
from poster_assets.defs.facts import current_posters, extraction_facts
from poster_assets.defs.metadata import extraction_metadata, image_markdown, table_definition
from poster_assets.defs.models.sources import model_key
from poster_assets.defs.partitions import batch_partitions
from poster_assets.defs.resources import BATCH_POOL, ModelsResource, PosterStore
from poster_assets.extract.pipeline import (
    DEPTH,
    EXTRACTORS,
    FOREGROUND,
    LAYERS,
    OCR,
    PassResult,
    extract_batch,
    stored_inputs,
)
from poster_assets.extract.runner import PosterRef, load_rgb
from poster_assets.extract.versions import LAYERS_METHOD, CurrentVersions, current_versions
from poster_assets.models.depth import DEPTH_MODEL
from poster_assets.models.foreground import FOREGROUND_MODELS
from poster_assets.models.ocr import OCR_MODELS
from poster_assets.models.registry import get_spec
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
OCR_TEXT, DEPTH_MAPS, FOREGROUND_MASKS, LAYER_MASKS = (dg.AssetKey(a) for a in EXTRACTORS)
_PREVIEW_POSTERS = 6
# The networks each dense extractor may use, preferred first (its model source assets).
_DENSE_MODELS = {DEPTH: (DEPTH_MODEL,), FOREGROUND: FOREGROUND_MODELS}
Rgb = Callable[[PosterRef], np.ndarray]  # a poster, decoded


def _spec(
    name: str, description: str, deps: Sequence[dg.AssetKey], code_version: str, kinds: set[str]
) -> dg.AssetSpec:
    return dg.AssetSpec(
        name,
        description=description,
        deps=deps,
        group_name="extract",
        kinds=kinds,
        code_version=code_version,
        metadata=table_definition(name),
    )


@dg.multi_asset(
    specs=[
        _spec(
            OCR,
            "Text lines per poster from PP-OCR (rapidocr on OpenVINO): polygon, box, text, confidence, "
            "reading order and the model versions that read them.",
            [RAW_POSTERS, *(model_key(m) for m in OCR_MODELS)],
            "ocr-v1",
            {"openvino", "duckdb"},
        ),
        _spec(
            DEPTH,
            "Relative monocular depth per poster (MiDaS v2.1 small on OpenVINO, or the heuristic "
            "fallback): a 16-bit PNG (65535 = nearest) plus min/max, histogram and its modes.",
            [RAW_POSTERS, *(model_key(m) for m in _DENSE_MODELS[DEPTH])],
            "depth-v1",
            {"openvino", "duckdb"},
        ),
        _spec(
            FOREGROUND,
            "Foreground (subject) probability per poster (IS-Net when pulled, else U²-Netp, on "
            "OpenVINO; or GrabCut seeded by saliency and a border prior): an 8-bit PNG plus area share "
            "and bbox.",
            [RAW_POSTERS, *(model_key(m) for m in _DENSE_MODELS[FOREGROUND])],
            "foreground-v1",
            {"openvino", "duckdb"},
        ),
        _spec(
            LAYERS,
            "Layers per poster fused from its three inputs (``vision.fusion``): the title layer is the "
            "title's ink (from the OCR boxes), the subject layer the foreground mask, extended by depth "
            "where depth clearly separates the subject and the mask stops inside a depth segment, and "
            "the rest depth bands (K-means, K from the histogram's modes), the farthest the background. "
            "One row per layer, with the versions of all three inputs.",
            [DEPTH_MAPS, FOREGROUND_MASKS, OCR_TEXT],
            LAYERS_METHOD,
            {"opencv", "duckdb"},
        ),
    ],
    partitions_def=batch_partitions,
    can_subset=True,
    pool=BATCH_POOL,
)
def poster_extractors(
    context: dg.AssetExecutionContext, store: PosterStore, models: ModelsResource
) -> Iterator[dg.MaterializeResult]:
    """OCR, depth, foreground and layers of the batch's posters that lack a value at the current
    model versions, a chunk of 16 at a time: each poster decoded once, OCR beside the depth and
    foreground networks, the layers fused from their results in memory. Models are loaded only
    when there is work."""
    batch = context.partition_key
    require_batch(store, batch)
    selected = [a for a in EXTRACTORS if dg.AssetKey(a) in context.selected_asset_keys]
    current = current_versions(models)

    def progress(done: int, total: int, seconds: dict[str, float]) -> None:
        spent = ", ".join(f"{stage} {s:.1f}" for stage, s in seconds.items() if stage != "total")
        context.log.info(f"{done}/{total} posters; the chunk took {seconds['total']:.1f} s ({spent})")

    result = extract_batch(store, models, batch, current, selected, progress=progress)
    for asset, estimator in result.dense.items():
        if not estimator.neural:
            context.log.warning(f"{asset}: using fallback {estimator.version} ({estimator.reason})")
    try:
        # The previews mostly show the same first posters of the batch: decode each once.
        rgb = functools.cache(lambda ref: load_rgb(store.blobs, ref))
        with store.db.session():  # a few dozen short reads
            for asset in selected:
                if asset in result.unavailable:
                    continue
                version = current.by_asset()[asset]
                facts = extraction_facts(store, asset, version, batch)
                refs = current_posters(store, asset, version, batch, _PREVIEW_POSTERS)
                preview = _PREVIEWS[asset](store, refs, current, rgb) if refs else None
                extra = _extra(asset, result, current, models)
                yield dg.MaterializeResult(
                    asset_key=asset,
                    metadata=extraction_metadata(facts, result.stats[asset], extra, preview),
                )
    finally:
        # The run's later steps (embeddings, checks) run in this process and use none of these
        # networks: without this the OCR pool and the foreground network (~1.5 GB) would stay
        # beside EfficientNet until the run ends.
        result.ocr, result.dense = None, {}
        models.release()
    if result.unavailable:
        # After the others' materializations: an extractor that cannot run fails the step alone.
        raise dg.Failure(description="\n".join(f"{a}: {why}" for a, why in result.unavailable.items()))


def _extra(asset: str, result: PassResult, current: CurrentVersions, models: ModelsResource) -> dict:
    """What an extractor reports beside its facts: the engines that ran, whether a network or a
    fallback made the values, the versions the layers were fused from."""
    if asset == OCR:
        return {"engines": str(result.ocr.engines)} if result.ocr else {}
    if asset == LAYERS:
        versions = {"depth": current.depth, "foreground": current.foreground, "ocr": current.ocr}
        return {f"{k}_version": v for k, v in versions.items()} | {"layers_version": current.layers}
    estimator = result.dense.get(asset)
    if estimator is None:  # nothing to do, nothing loaded: the version names what made the values
        version = current.by_asset()[asset]
        return {"neural": version not in {get_spec(m, models.path).fallback for m in _DENSE_MODELS[asset]}}
    if estimator.neural:
        return {"neural": True}
    return {"neural": False, "fallback_reason": estimator.reason or ""}


def _ocr_preview(
    store: PosterStore, refs: list[PosterRef], current: CurrentVersions, rgb: Rgb
) -> dg.MetadataValue:
    lines: dict[str, list[tuple[list[int], str]]] = {}
    for pid, box, text in store.db.query(
        "SELECT poster_id, box, text FROM ocr_text WHERE model_version = ? AND poster_id IN ? "
        "ORDER BY poster_id, line_index",
        [current.ocr, [r.poster_id for r in refs]],
    ):
        lines.setdefault(pid, []).append((box, text))
    tiles = [ocr_tile(rgb(r), [b for b, _ in lines.get(r.poster_id, [])]) for r in refs]
    captions = [lines[r.poster_id][0][1] if r.poster_id in lines else "(no text)" for r in refs]
    return image_markdown(contact_sheet(tiles, captions, columns=6, tile_width=160), "OCR boxes")


def _dense_preview(
    asset: str, path_column: str, tile: Callable[[np.ndarray, Path], np.ndarray]
) -> Callable[..., dg.MetadataValue]:
    """The preview of a dense extractor: ``tile(poster rgb, stored file path)`` per poster."""

    def preview(
        store: PosterStore, refs: list[PosterRef], current: CurrentVersions, rgb: Rgb
    ) -> dg.MetadataValue:
        paths = dict(
            store.db.query(
                f"SELECT poster_id, {path_column} FROM {asset} WHERE model_version = ? AND poster_id IN ?",
                [current.by_asset()[asset], [r.poster_id for r in refs]],
            )
        )
        tiles = [Image.fromarray(tile(rgb(r), store.blobs.abspath(paths[r.poster_id]))) for r in refs]
        return image_markdown(
            contact_sheet(tiles, [r.file_name for r in refs], columns=6, tile_width=160), asset
        )

    return preview


def _depth_tile(rgb: np.ndarray, path: Path) -> np.ndarray:
    return depth_colormap(decode_depth(path))


def _foreground_tile(rgb: np.ndarray, path: Path) -> np.ndarray:
    prob = decode_mask(path)[..., None]
    return (rgb.astype(np.float32) * (0.25 + 0.75 * prob)).astype(np.uint8)


def _layers_preview(
    store: PosterStore, refs: list[PosterRef], current: CurrentVersions, rgb: Rgb
) -> dg.MetadataValue:
    """Each poster's stored layers (its label PNG and rows), drawn as they were when computed."""
    ids = [r.poster_id for r in refs]
    inputs = stored_inputs(store, ids, current)
    layers: dict[str, list[tuple]] = {}
    for pid, *row in store.db.query(
        "SELECT poster_id, layer_index, depth_rank, area_fraction, bbox, role, mean_depth, title_box, "
        "labels_path FROM layer_masks WHERE model_version = ? AND poster_id IN ? "
        "ORDER BY poster_id, layer_index",
        [current.layers, ids],
    ):
        layers.setdefault(pid, []).append(tuple(row))
    panels = []
    for ref in refs:
        found, rows = inputs[ref.poster_id], layers.get(ref.poster_id)
        if found.depth_path is None or found.mask_path is None or not rows:
            continue
        labels = decode_labels(store.blobs.abspath(rows[0][-1]))
        infos = [
            LayerInfo(i, rank, area, list(bbox), role, mask=labels == i, mean_depth=mean)
            for i, rank, area, bbox, role, mean, _, _ in rows
        ]
        title = next((box for *_, box, _ in rows if box), None)
        depth = decode_depth(store.blobs.abspath(found.depth_path))
        fg = decode_mask(store.blobs.abspath(found.mask_path))
        panels.append(extraction_panel(rgb(ref), depth, infos, title, fg, [b for b, _, _ in found.ocr]))
    sheet = contact_sheet(panels, columns=2, tile_width=480, tile_height=240)
    return image_markdown(with_legend(sheet, layer_legend_items()), "layers")


_PREVIEWS = {
    OCR: _ocr_preview,
    DEPTH: _dense_preview(DEPTH, "depth_path", _depth_tile),
    FOREGROUND: _dense_preview(FOREGROUND, "mask_path", _foreground_tile),
    LAYERS: _layers_preview,
}
