"""How well the offline vision fallbacks do on the demo corpus's ground truth.

    python benchmarks/vision_quality.py [--n 40] [--seed 0] [--corpus /tmp/vision_corpus] [--panels DIR]

OCR is stood in for by the ground truth: the title line boxes, the credits block split into its
lines and the tagline box, each with its text and confidence 0.9, so the title choice is tested
against real distractors. Prints, per method and over the corpus:

- foreground IoU of ``fg:grabcut-saliency-v1`` (target mean >= 0.60);
- title choice: IoU of the chosen title box with the ground-truth title box;
- title glyph share: ground-truth title glyph pixels inside the title layer (target >= 0.80),
  and the title layer's precision (its pixels that are glyphs);
- subject layer IoU with the ground-truth foreground; the K chosen; timings.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from poster_assets.demo import GroundTruth, generate_corpus, load_ground_truth
from poster_assets.vision.depth_heuristic import estimate_depth
from poster_assets.vision.foreground_grabcut import foreground_probability
from poster_assets.vision.layers import split_layers
from poster_assets.vision.metrics import box_iou, mask_iou, share_inside
from poster_assets.vision.overlays import extraction_panel
from poster_assets.vision.roles import ROLE_SUBJECT, ROLE_TITLE, assign_roles
from poster_assets.vision.title import title_box


def stand_in_ocr(gt: GroundTruth) -> list[tuple[list[int], str, float]]:
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


def _summary(name: str, values: list[float], target: float | None = None) -> str:
    v = np.asarray(values, dtype=np.float64)
    goal = f"  (target >= {target:.2f})" if target is not None else ""
    return f"{name:<34} mean {v.mean():.3f}  median {np.median(v):.3f}  min {v.min():.3f}{goal}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/vision_corpus"))
    parser.add_argument(
        "--panels", type=Path, default=None, help="write one extraction panel per poster here"
    )
    args = parser.parse_args()
    if not (args.corpus / "ground_truth.jsonl").is_file():
        generate_corpus(args.corpus, n=args.n, seed=args.seed)
    truths = list(load_ground_truth(args.corpus).values())[: args.n]
    if args.panels:
        args.panels.mkdir(parents=True, exist_ok=True)

    fg_iou, title_choice, glyph_share, title_precision, subject_iou = [], [], [], [], []
    ks: Counter[int] = Counter()
    timings: dict[str, list[float]] = {"depth": [], "foreground": [], "layers": []}
    rows = []
    for gt in truths:
        rgb = np.asarray(Image.open(gt.path).convert("RGB"))
        ocr = stand_in_ocr(gt)
        boxes = [b for b, _, _ in ocr]
        t0 = time.perf_counter()
        depth = estimate_depth(rgb, boxes)
        t1 = time.perf_counter()
        fg = foreground_probability(rgb, boxes)
        t2 = time.perf_counter()
        split = split_layers(depth, rgb)
        layers = assign_roles(split, ocr, fg, rgb=rgb)
        t3 = time.perf_counter()
        timings["depth"].append(t1 - t0)
        timings["foreground"].append(t2 - t1)
        timings["layers"].append(t3 - t2)

        fg_truth, glyphs = gt.foreground_mask_array(), gt.title_mask_array()
        choice = title_box(ocr, rgb.shape)
        title = next((li for li in layers if li.role == ROLE_TITLE), None)
        subject = next((li for li in layers if li.role == ROLE_SUBJECT), None)
        fg_iou.append(mask_iou(fg, fg_truth))
        title_choice.append(box_iou(choice.box, gt.title_box) if choice else 0.0)
        glyph_share.append(share_inside(glyphs, title.mask) if title else 0.0)
        title_precision.append(share_inside(title.mask, glyphs) if title else 0.0)
        subject_iou.append(mask_iou(subject.mask, fg_truth) if subject else 0.0)
        ks[split.k] += 1
        rows.append(
            (gt.file, gt.genre, gt.extra.get("background"), fg_iou[-1], glyph_share[-1], title_choice[-1])
        )
        if args.panels:
            panel = extraction_panel(rgb, depth, layers, choice, fg, boxes)
            panel.save(args.panels / f"{Path(gt.file).stem}.png")

    print(f"{len(truths)} posters from {args.corpus}")
    print(_summary("foreground IoU (grabcut-saliency)", fg_iou, 0.60))
    print(_summary("title choice box IoU", title_choice))
    print(_summary("title glyph share in title layer", glyph_share, 0.80))
    print(_summary("title layer precision", title_precision))
    print(_summary("subject layer IoU vs foreground", subject_iou))
    print(f"{'K chosen':<34} " + ", ".join(f"K={k}: {c}" for k, c in sorted(ks.items())))
    for name, ts in timings.items():
        print(f"{name + ' ms / poster':<34} mean {1000 * np.mean(ts):.1f}  max {1000 * np.max(ts):.1f}")
    print("\nworst foreground / glyph share:")
    for file, genre, background, f, g, c in sorted(rows, key=lambda r: min(r[3], r[4]))[:8]:
        print(
            f"  {file:<40} {genre:<10} {background or '':<10} fg {f:.2f}  glyphs {g:.2f}  title-box {c:.2f}"
        )


if __name__ == "__main__":
    main()
