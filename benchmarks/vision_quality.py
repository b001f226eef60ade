"""Extraction quality on the demo corpus's ground truth, through the product's own path.

    python benchmarks/vision_quality.py [--n 40] [--corpus DIR] [--models-dir DIR]
        [--det-limit 736 640 ...] [--stand-in-ocr] [--panels DIR]

Per poster, as the extractors and ``layer_masks`` do it: OCR with ``OcrEngine`` (or, with
``--stand-in-ocr``, the ground truth's title lines, credits lines and tagline, confidence 0.9,
so the title choice still meets real distractors), depth with ``DepthEstimator`` and the
foreground with ``ForegroundSegmenter`` (IS-Net when ``--models-dir`` holds it, else the
classical fallbacks), both round-tripped through the stored PNG codecs, then the layers with
``vision.fusion.fuse_layers``. Scores as ``poster-assets evaluate`` does (``extract.evaluate``):
title exact match and CER of the title the layers name, title box IoU, true title ink in the
title layer, subject layer IoU and foreground IoU against the true foreground; and the time per
poster of each step. Each ``--det-limit`` (the detector's short side; 736 is rapidocr's
default) is scored on the same posters, depth and foreground: the detector size against title
accuracy. ``--models-dir`` is only read (caches go to a temporary folder).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from poster_assets.demo import GroundTruth, generate_corpus, load_ground_truth
from poster_assets.storage.codecs import MASK_THRESHOLD, decode_depth, decode_mask, encode_depth, encode_mask
from poster_assets.vision.metrics import box_iou, character_error_rate, mask_iou, share_inside
from poster_assets.vision.roles import ROLE_SUBJECT, ROLE_TITLE

OcrItems = list[tuple[list[int], str, float]]


def stand_in_ocr(gt: GroundTruth) -> OcrItems:
    items = [(box, text, 0.9) for box, text in zip(gt.title_line_boxes, gt.title_lines, strict=True)]
    credits = gt.extra.get("credits_text") or []
    if gt.credits_box and credits:
        x0, y0, x1, y1 = gt.credits_box
        step = (y1 - y0) / len(credits)
        for i, text in enumerate(credits):
            items.append(([x0, round(y0 + i * step), x1, round(y0 + (i + 1) * step)], text, 0.9))
    if gt.extra.get("tagline_box"):
        items.append((gt.extra["tagline_box"], gt.extra.get("tagline") or "", 0.9))
    return items


def staged_models_dir(source: Path | None, work: Path) -> Path | None:
    """A models folder whose files link to ``source``'s: the estimators write their compile cache
    and contract verdicts into the folder they are given, and ``source`` stays untouched."""
    if source is None:
        return None
    staged = work / "models"
    staged.mkdir(parents=True, exist_ok=True)
    for path in Path(source).iterdir():
        if path.is_file() and not path.name.startswith("."):
            (staged / path.name).symlink_to(path.resolve())
    return staged


def stored(depth: np.ndarray, fg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth and foreground as ``layer_masks`` reads them back: min-max normalised, 16-bit and
    8-bit PNGs (the codecs the extractors write with)."""
    lo, hi = float(depth.min()), float(depth.max())
    norm = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
    return decode_depth(io.BytesIO(encode_depth(norm))), decode_mask(io.BytesIO(encode_mask(fg)))


def score(gt: GroundTruth, fused, fg: np.ndarray) -> dict[str, float]:  # noqa: ANN001
    """One poster's figures, as ``extract.evaluate`` computes them from the stored rows."""
    title = next((li for li in fused.layers if li.role == ROLE_TITLE), None)
    subject = next((li for li in fused.layers if li.role == ROLE_SUBJECT), None)
    read = fused.title.text if fused.title and title else ""
    true_fg = gt.foreground_mask_array()
    return {
        "title_exact_match": float(" ".join(read.split()) == " ".join(gt.title.split())),
        "title_cer": character_error_rate(read, gt.title),
        "title_box_iou": box_iou(fused.title.box, gt.title_box) if fused.title and title else 0.0,
        "title_pixels_in_title_layer": share_inside(gt.title_mask_array(), title.mask) if title else 0.0,
        "subject_layer_iou": mask_iou(subject.mask, true_fg) if subject else 0.0,
        "foreground_iou": mask_iou(fg >= MASK_THRESHOLD, true_fg),
    }


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=None, help="an existing demo corpus (else generated)")
    parser.add_argument("--models-dir", type=Path, default=None, help="holds IS-Net (read only)")
    parser.add_argument("--det-limit", type=int, nargs="*", default=[None], help="detector short sides")
    parser.add_argument("--stand-in-ocr", action="store_true", help="the ground truth's lines as OCR")
    parser.add_argument("--panels", type=Path, default=None, help="write one extraction panel per poster")
    return parser.parse_args()


Figures = dict[object, dict[str, list[float]]]


def measure(truths: list[GroundTruth], models_dir: Path | None, args: argparse.Namespace) -> Figures:
    """Per OCR configuration (det limit, or None), each figure per poster."""
    from poster_assets.models.depth import DepthEstimator
    from poster_assets.models.foreground import ForegroundSegmenter
    from poster_assets.models.ocr import OcrEngine

    depth_est, fg_est = DepthEstimator(models_dir), ForegroundSegmenter(models_dir)
    limits = [None] if args.stand_in_ocr else args.det_limit
    engines = (
        {} if args.stand_in_ocr else {lim: OcrEngine(models_dir, det_limit_side_len=lim) for lim in limits}
    )
    print(f"depth: {depth_est.version}; foreground: {fg_est.version}")
    print("ocr: " + (engines[limits[0]].version if engines else "ground-truth stand-in"))
    figures: Figures = defaultdict(lambda: defaultdict(list))
    for gt in truths:
        rgb = np.asarray(Image.open(gt.path).convert("RGB"))
        t0 = time.perf_counter()
        depth = depth_est.predict(rgb)
        t1 = time.perf_counter()
        fg = fg_est.predict(rgb)
        maps_ms = {"depth ms": 1000 * (t1 - t0), "foreground ms": 1000 * (time.perf_counter() - t1)}
        depth, fg = stored(depth, fg)
        for lim in limits:
            row = figures[lim]
            for name, value in {**maps_ms, **_one(gt, rgb, depth, fg, engines.get(lim), args)}.items():
                row[name].append(value)
    return figures


def _one(gt: GroundTruth, rgb: np.ndarray, depth: np.ndarray, fg: np.ndarray, engine, args) -> dict:  # noqa: ANN001
    """OCR (``engine``, or the stand-in when None), layers and the poster's scores."""
    from poster_assets.vision.fusion import fuse_layers

    t0 = time.perf_counter()
    items = [(i.box, i.text, i.confidence) for i in engine.read(rgb)] if engine else stand_in_ocr(gt)
    t1 = time.perf_counter()
    fused = fuse_layers(rgb, depth, fg, items)
    t2 = time.perf_counter()
    if args.panels:
        from poster_assets.vision.overlays import extraction_panel

        boxes = [b for b, _, _ in items]
        panel = extraction_panel(rgb, depth, fused.layers, fused.title, fg, boxes)
        panel.save(args.panels / f"{Path(gt.file).stem}.png")
    return {**score(gt, fused, fg), "ocr ms": 1000 * (t1 - t0), "layers ms": 1000 * (t2 - t1)}


def main() -> None:
    args = _args()
    with tempfile.TemporaryDirectory(prefix="vision-quality-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("POSTER_ASSETS_HOME", str(work / "home"))
        corpus = args.corpus or work / "corpus"
        if args.corpus is None:
            generate_corpus(corpus, n=args.n, seed=args.seed)
        truths = sorted(load_ground_truth(corpus).values(), key=lambda g: g.file)[: args.n]
        if args.panels:
            args.panels.mkdir(parents=True, exist_ok=True)
        print(f"{len(truths)} posters from {corpus}")
        figures = measure(truths, staged_models_dir(args.models_dir, work), args)
    for lim, row in figures.items():
        label = "stand-in OCR" if args.stand_in_ocr else f"det short side {lim or 'default (736)'}"
        print(f"\n{label}:")
        for name, values in row.items():
            print(f"  {name:<30} mean {np.mean(values):8.4f}   median {np.median(values):8.4f}")


if __name__ == "__main__":
    main()
