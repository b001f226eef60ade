"""Foreground quality against cost of IS-Net at several input sizes, on the demo ground truth.

    POSTER_ASSETS_HOME=/tmp/fg-bench .venv/bin/python benchmarks/foreground_size.py \\
        [--n 24] [--seed 0] [--sizes 768,640,512,448,384] [--model isnet-general-medium] \\
        [--flip] [--largest] [--inpaint-text [--inpaint-px 256]] [--breakdown] [--worst K]

Runs in a scratch home (``POSTER_ASSETS_HOME``; ``./poster_data`` is refused): pulls the model
there when it is missing (AGPL-3.0 weights, see the README's Models section; a copy of the
pulled ``.onnx`` placed in that home's ``models/`` folder is used as it is), then, for each
size, registers a version of the model at that size in that home's ``models/manifest.json``
(the way a user changes the size; the manifest is put back as it was afterwards) and runs the
foreground extractor (``ForegroundSegmenter``) over the first ``--n`` posters of the demo
corpus (``--corpus``: an existing one, e.g. the 200 posters ``poster-assets demo`` wrote, which
is only read; by default one generated in the home with ``--seed``).

A size is ``640`` (square) or ``HxW`` (``960x640``: the 2:3 portrait shape of the demo posters,
which a square input squashes by 1.5); both sides multiples of 64 (IS-Net refuses 672x448: its
skip connections no longer align). 1024 is the network as shipped; other sizes use the graph
with its ``Resize`` nodes rewritten to scale factors. The classical fallback runs too
(``--no-fallback`` skips it).

Variants of each size, from the same network (each its own row):

- ``+flip`` (``--flip``): test-time flip averaging, the mean of the map of the poster and the
  mirrored map of the mirrored poster; two inferences, and both are in its time.
- ``+lcc`` (``--largest``): only the largest connected component of the thresholded mask is
  kept (a poster's subject is one region; the network also marks salient title and credit
  text, which is another); the post-processing time is added to the inference time.
- ``+inp`` (``--inpaint-text``): the network sees the poster with its text lines filled in
  (OpenCV inpainting of the boxes that the project's OCR, ``OcrEngine``, finds; run once
  before the sizes, its time shown apart, since the ``ocr_text`` asset computes it anyway),
  at the run size's long side or ``--inpaint-px``; the inpainting is in the row's time.

Prints one row per size and variant: mean foreground IoU against the ground truth (scored as
``poster-assets evaluate`` does: the stored 8-bit probability >= MASK_THRESHOLD against the
true mask), seconds per poster (wall time of one ``predict_batch`` over all posters, as the
``foreground_masks`` asset calls it, after a warm-up; compiling excluded and shown apart), both
as ratios to the 1024 baseline, and the mean per-poster IoU difference to 1024 with its
standard error (per-poster IoUs spread widely, so a difference smaller than about two standard
errors is no difference). Timings are only comparable within one run on a quiet machine (on a
shared one the same size can take twice as long from one minute to the next).

``--breakdown`` adds, per row, the mean IoU by what the demo generator drew as the subject
(the ground truth's ``subject``: a photo cut out through a shape, or the horse silhouette) and
by the cut-out's shape; ``--worst K`` lists each row's K lowest-scoring posters.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from poster_assets import settings
from poster_assets.demo import generate_corpus, load_ground_truth
from poster_assets.demo.ground_truth import GroundTruth
from poster_assets.models import runtime
from poster_assets.models.foreground import ForegroundSegmenter
from poster_assets.models.registry import ModelSpec, get_spec, size_tag
from poster_assets.models.weights import model_status, pull
from poster_assets.storage.codecs import MASK_THRESHOLD, quantize_mask
from poster_assets.vision.metrics import mask_iou

BASELINE = 1024
Size = tuple[int, int]  # (height, width), as the registry's input contract


@dataclasses.dataclass
class Row:
    label: str
    version: str
    ious: list[float]
    s_per_poster: float
    compile_s: float

    @property
    def iou(self) -> float:
        return float(np.mean(self.ious))

    @property
    def se(self) -> float:
        """Standard error of the mean IoU over posters."""
        n = len(self.ious)
        return float(np.std(self.ious, ddof=1) / np.sqrt(n)) if n > 1 else 0.0

    def paired(self, ref: Row) -> str:
        """Mean per-poster IoU difference to ``ref`` and its standard error: whether a size is
        really better or worse on these posters, or within their spread."""
        diff = np.asarray(self.ious) - np.asarray(ref.ious)
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        return f"{diff.mean():+.3f}±{se:.3f}"


def parse_size(text: str) -> Size:
    """``640`` -> (640, 640); ``960x640`` -> (960, 640) (height x width)."""
    h, _, w = text.strip().lower().partition("x")
    return (int(h), int(w or h))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a bool mask (the mask itself when it has at most one)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:  # background and at most one region
        return mask
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _flip_average(
    seg: ForegroundSegmenter, images: list[np.ndarray], probs: list[np.ndarray]
) -> tuple[list, float]:
    """Test-time flip averaging: each map averaged with the mirrored map of the mirrored poster;
    returns the maps and the seconds the mirrored pass took."""
    mirrored = [np.ascontiguousarray(im[:, ::-1]) for im in images]
    t0 = time.perf_counter()
    flipped = seg.predict_batch(mirrored)
    elapsed = time.perf_counter() - t0
    return [(p + f[:, ::-1]) / 2 for p, f in zip(probs, flipped, strict=True)], elapsed


def _scored(
    label: str,
    seg: ForegroundSegmenter,
    probs: list[np.ndarray],
    truths: list[np.ndarray],
    seconds: float,
    compile_s: float,
    post: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Row:
    t0 = time.perf_counter()
    masks = [quantize_mask(p) >= MASK_THRESHOLD for p in probs]
    if post is not None:
        masks = [post(m) for m in masks]
        seconds += time.perf_counter() - t0  # post-processing is part of the variant's cost
    ious = [mask_iou(m, t) for m, t in zip(masks, truths, strict=True)]
    return Row(label, seg.version, ious, seconds / len(probs), compile_s)


def _measure(
    label: str,
    seg: ForegroundSegmenter,
    images: list,
    truths: list[np.ndarray],
    compile_s: float,
    flip: bool = False,
    largest: bool = False,
    text_boxes: list[list[list[int]]] | None = None,
    inpaint_px: int | None = None,
) -> list[Row]:
    seg.predict_batch(images[:1])  # warm-up: first inference allocates
    t0 = time.perf_counter()
    probs = seg.predict_batch(images)
    elapsed = time.perf_counter() - t0
    rows = [_scored(label, seg, probs, truths, elapsed, compile_s)]
    if largest:
        rows.append(_scored(f"{label}+lcc", seg, probs, truths, elapsed, compile_s, largest_component))
    if flip:
        averaged, more = _flip_average(seg, images, probs)
        rows.append(_scored(f"{label}+flip", seg, averaged, truths, elapsed + more, compile_s))
        if largest:
            rows.append(
                _scored(
                    f"{label}+flip+lcc", seg, averaged, truths, elapsed + more, compile_s, largest_component
                )
            )
    if text_boxes is not None:
        work = inpaint_px or max(seg.spec.input.size or (1024, 1024))
        t0 = time.perf_counter()
        cleaned = [inpaint_text(im, boxes, work) for im, boxes in zip(images, text_boxes, strict=True)]
        probs = seg.predict_batch(cleaned)
        rows.append(_scored(f"{label}+inp", seg, probs, truths, time.perf_counter() - t0, compile_s))
    return rows


def inpaint_text(rgb: np.ndarray, boxes: list[list[int]], work: int) -> np.ndarray:
    """``rgb`` with the text boxes ([x0, y0, x1, y1]) filled in from their surroundings (OpenCV's
    Telea inpainting), done at ``work`` pixels on the long side (the network sees no more) and
    pasted back into the boxes only."""
    if not boxes:
        return rgb
    h, w = rgb.shape[:2]
    scale = min(1.0, work / max(h, w))
    small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    hole = np.zeros(small.shape[:2], np.uint8)
    for x0, y0, x1, y1 in boxes:
        hole[
            int(y0 * scale) : int(np.ceil(y1 * scale)) + 1, int(x0 * scale) : int(np.ceil(x1 * scale)) + 1
        ] = 255
    filled = cv2.resize(
        cv2.inpaint(small, hole, 5, cv2.INPAINT_TELEA), (w, h), interpolation=cv2.INTER_LINEAR
    )
    inside = cv2.resize(hole, (w, h), interpolation=cv2.INTER_NEAREST) > 0
    out = rgb.copy()
    out[inside] = filled[inside]
    return out


def _text_boxes(models_dir: Path, images: list[np.ndarray]) -> tuple[list[list[list[int]]], float]:
    """Each poster's OCR line boxes, as the ``ocr_text`` asset finds them, and seconds per poster."""
    from poster_assets.models.ocr import OcrEngine  # lazy: only --inpaint-text reads text

    t0 = time.perf_counter()
    items = OcrEngine(models_dir).read_many(images)
    return [[item.box for item in lines] for lines in items], (time.perf_counter() - t0) / len(images)


def _at_size(models_dir: Path, base: ModelSpec, size: Size, original: str | None) -> ForegroundSegmenter:
    """The segmenter with ``base`` registered at ``size`` (a manifest version, as a user adds one)."""
    model = base.name
    entries = json.loads(original)["model"] if original else []
    if base.input.size != size:
        stem = re.sub(r"-\d+(x\d+)?px$", "", base.version)
        entry = {
            "name": model,
            "version": f"{stem}-{size_tag(size)}",
            "source": base.source,
            "sha256": base.sha256,
            "input": {"size": list(size)},
        }
        if base.integrity:
            entry["integrity"] = base.integrity
        entries = [*entries, entry]
    (models_dir / "manifest.json").write_text(json.dumps({"model": entries}))
    seg = ForegroundSegmenter(models_dir, model=model)
    if not seg.neural:
        sys.exit(f"{model} at {size_tag(size)}: {seg.reason}")
    return seg


def _label(size: Size) -> str:
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


def _print_breakdown(rows: list[Row], records: list[GroundTruth], key: str) -> None:
    """Mean IoU per row by a ground-truth field (``subject``, ``subject_shape``)."""
    kinds = [str(r.extra.get(key, "?")) for r in records]
    order = sorted(set(kinds), key=lambda k: (-kinds.count(k), k))
    width = max(8, *(len(k) for k in order))
    print(f"\nIoU by {key} (n posters):")
    print(f"{'':>14}  " + "  ".join(f"{k:>{width}}" for k in order))
    print(f"{'n':>14}  " + "  ".join(f"{kinds.count(k):>{width}}" for k in order))
    for row in rows:
        ious = np.asarray(row.ious)
        cells = [ious[[k == kind for k in kinds]].mean() for kind in order]
        print(f"{row.label:>14}  " + "  ".join(f"{c:>{width}.3f}" for c in cells))


def _print_worst(rows: list[Row], records: list[GroundTruth], k: int) -> None:
    for row in rows:
        print(f"\n{row.label}: the {k} lowest IoUs")
        for i in np.argsort(row.ious, kind="stable")[:k]:
            r = records[i]
            what = f"{r.extra.get('subject', '?')}/{r.extra.get('subject_shape', '?')}"
            print(f"  {row.ious[i]:.3f}  {r.file:40}  {what:22}  {r.genre:12}  title {r.title_placement}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="posters (the first N of the demo corpus)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sizes",
        default="768,640,512,448,384",
        help="besides 1024, the baseline: 640 (square) or 960x640 (HxW)",
    )
    parser.add_argument("--model", default="isnet-general-medium")
    parser.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help="default: <home>/fg_bench_corpus_seed<seed>_n<n>, generated when missing",
    )
    parser.add_argument("--no-fallback", action="store_true", help="skip the classical fallback")
    parser.add_argument("--no-baseline", action="store_true", help="skip 1024 (no ratios printed)")
    parser.add_argument("--flip", action="store_true", help="also each size with test-time flip averaging")
    parser.add_argument("--largest", action="store_true", help="also each size keeping the largest region")
    parser.add_argument(
        "--inpaint-text", action="store_true", help="also each size with the OCR text inpainted first"
    )
    parser.add_argument(
        "--inpaint-px",
        type=int,
        default=None,
        help="long side the text is inpainted at (default: the run size's)",
    )
    parser.add_argument("--breakdown", action="store_true", help="IoU by subject kind and cut-out shape")
    parser.add_argument("--worst", type=int, default=0, metavar="K", help="list each row's K worst posters")
    args = parser.parse_args()
    home = settings.home_dir()
    if settings.HOME_ENV not in os.environ or home == Path(settings.DEFAULT_HOME).resolve():
        sys.exit("set POSTER_ASSETS_HOME to a scratch folder: this benchmark edits its models/manifest.json")
    models_dir = settings.models_dir(home)
    models_dir.mkdir(parents=True, exist_ok=True)
    sizes = {parse_size(s) for s in args.sizes.split(",") if s.strip()}
    if not args.no_baseline:
        sizes.add((BASELINE, BASELINE))

    corpus = args.corpus or home / f"fg_bench_corpus_seed{args.seed}_n{args.n}"
    if not (corpus / "ground_truth.jsonl").is_file():
        generate_corpus(corpus, n=args.n, seed=args.seed)
    records = sorted(load_ground_truth(corpus).values(), key=lambda t: t.file)[: args.n]
    if len(records) < args.n:
        sys.exit(f"{corpus} holds {len(records)} posters with ground truth, fewer than --n {args.n}")
    images = [np.asarray(Image.open(t.path).convert("RGB")) for t in records]
    truths = [t.foreground_mask_array() for t in records]

    if model_status(get_spec(args.model, models_dir), models_dir).state != "present":
        t0 = time.perf_counter()
        pulled = pull(args.model, timeout=120, models_dir=models_dir)
        print(f"pulled {args.model} to {pulled.path} in {time.perf_counter() - t0:.1f} s")

    text_boxes, ocr_s = _text_boxes(models_dir, images) if args.inpaint_text else (None, 0.0)
    base = get_spec(args.model, models_dir)
    manifest = models_dir / "manifest.json"
    original = manifest.read_text() if manifest.exists() else None
    rows: list[Row] = []
    try:
        # Largest first (pixels), so the baseline's compile warms nothing the others use.
        for size in sorted(sizes, key=lambda s: (s[0] * s[1], s), reverse=True):
            t0 = time.perf_counter()
            seg = _at_size(models_dir, base, size, original)
            compile_s = time.perf_counter() - t0
            rows += _measure(
                _label(size),
                seg,
                images,
                truths,
                compile_s,
                args.flip,
                args.largest,
                text_boxes,
                args.inpaint_px,
            )
            print(f"  measured {_label(size)}: {seg.version}", file=sys.stderr)
    finally:
        if original is None:
            manifest.unlink(missing_ok=True)
        else:
            manifest.write_text(original)
    if not args.no_fallback:
        empty = home / "fg_bench_no_models"  # no weights at all: the classical fallback runs
        empty.mkdir(exist_ok=True)
        seg = ForegroundSegmenter(empty)
        rows += _measure("fallback", seg, images, truths, 0.0)

    hint = runtime.core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    print(
        f"{args.model}: {len(images)} demo posters (seed {args.seed}), OpenVINO CPU, "
        f"{os.cpu_count()} cores, default precision {precision}"
    )
    if text_boxes is not None:
        lines = sum(map(len, text_boxes))
        print(
            f"OCR for +inp (not in its time: the ocr_text asset runs it anyway): {lines} lines, "
            f"{ocr_s:.3f} s/poster"
        )
    ref = next((r for r in rows if r.label == str(BASELINE)), None)
    columns = (
        ("size", 14),
        ("fg IoU±se", 11),
        ("s/poster", 8),
        ("IoU/1024", 8),
        ("ΔIoU±se vs 1024", 15),
        ("time/1024", 9),
        ("compile s", 9),
    )
    print("  ".join(f"{name:>{width}}" for name, width in columns) + "  version")
    for r in rows:
        iou_ratio = f"{r.iou / ref.iou:8.3f}" if ref else f"{'-':>8}"
        paired = f"{r.paired(ref):>15}" if ref else f"{'-':>15}"
        time_ratio = f"{r.s_per_poster / ref.s_per_poster:9.2f}" if ref else f"{'-':>9}"
        print(
            f"{r.label:>14}  {f'{r.iou:.3f}±{r.se:.3f}':>11}  {r.s_per_poster:8.3f}  {iou_ratio}  {paired}  "
            f"{time_ratio}  {r.compile_s:9.1f}  {r.version}"
        )
    if args.breakdown:
        _print_breakdown(rows, records, "subject")
        _print_breakdown(rows, records, "subject_shape")
    if args.worst > 0:
        _print_worst(rows, records, args.worst)


if __name__ == "__main__":
    main()
