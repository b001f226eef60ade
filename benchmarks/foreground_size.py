"""Foreground quality against cost of IS-Net at several input sizes, on the demo ground truth.

    POSTER_ASSETS_HOME=/tmp/fg-bench .venv/bin/python benchmarks/foreground_size.py \\
        [--n 24] [--seed 0] [--sizes 768,640,512,448,384] [--model isnet-general-medium]

Runs in a scratch home (``POSTER_ASSETS_HOME``; ``./poster_data`` is refused): pulls the model
there when it is missing (AGPL-3.0 weights, see the README's Models section), then, for each
size, registers a version of the model at that size in that home's ``models/manifest.json``
(the way a user changes the size; the manifest is put back as it was afterwards) and runs the
foreground extractor (``ForegroundSegmenter``) over the first ``--n`` posters of the demo
corpus. 1024 is the network as shipped; smaller sizes use the graph with its ``Resize`` nodes
rewritten to scale factors. The classical fallback runs too (``--no-fallback`` skips it).

Prints one row per size: mean foreground IoU against the ground truth (scored as
``poster-assets evaluate`` does: the stored 8-bit probability >= MASK_THRESHOLD against the
true mask), seconds per poster (wall time of one ``predict_batch`` over all posters, as the
``foreground_masks`` asset calls it, after a warm-up; compiling excluded and shown apart), both
as ratios to the 1024 baseline, and the mean per-poster IoU difference to 1024 with its
standard error (per-poster IoUs spread widely, so a difference smaller than about two standard
errors is no difference). Timings are only comparable within one run on a quiet machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from poster_assets import settings
from poster_assets.demo import generate_corpus, load_ground_truth
from poster_assets.models import runtime
from poster_assets.models.foreground import ForegroundSegmenter
from poster_assets.models.registry import ModelSpec, get_spec, size_tag
from poster_assets.models.weights import model_status, pull
from poster_assets.storage.codecs import MASK_THRESHOLD, quantize_mask
from poster_assets.vision.metrics import mask_iou

BASELINE = 1024


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

    def paired(self, ref: Row) -> str:
        """Mean per-poster IoU difference to ``ref`` and its standard error: whether a size is
        really better or worse on these posters, or within their spread."""
        diff = np.asarray(self.ious) - np.asarray(ref.ious)
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        return f"{diff.mean():+.3f}±{se:.3f}"


def _measure(label: str, seg: ForegroundSegmenter, images: list, truths: list, compile_s: float) -> Row:
    seg.predict_batch(images[:1])  # warm-up: first inference allocates
    t0 = time.perf_counter()
    probs = seg.predict_batch(images)
    elapsed = time.perf_counter() - t0
    ious = [
        mask_iou(quantize_mask(p) >= MASK_THRESHOLD, t.foreground_mask_array())
        for p, t in zip(probs, truths, strict=True)
    ]
    return Row(label, seg.version, ious, elapsed / len(images), compile_s)


def _at_size(models_dir: Path, base: ModelSpec, size: int, original: str | None) -> ForegroundSegmenter:
    """The segmenter with ``base`` registered at ``size`` (a manifest version, as a user adds one)."""
    model = base.name
    entries = json.loads(original)["model"] if original else []
    if base.input.size != (size, size):
        stem = re.sub(r"-\d+(x\d+)?px$", "", base.version)
        entry = {
            "name": model,
            "version": f"{stem}-{size_tag((size, size))}",
            "source": base.source,
            "sha256": base.sha256,
            "input": {"size": [size, size]},
        }
        if base.integrity:
            entry["integrity"] = base.integrity
        entries = [*entries, entry]
    (models_dir / "manifest.json").write_text(json.dumps({"model": entries}))
    seg = ForegroundSegmenter(models_dir, model=model)
    if not seg.neural:
        sys.exit(f"{model} at {size}: {seg.reason}")
    return seg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="posters (the first N of the demo corpus)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", default="768,640,512,448,384", help="besides 1024, the baseline")
    parser.add_argument("--model", default="isnet-general-medium")
    parser.add_argument("--corpus", type=Path, default=None, help="default: <home>/fg_bench_corpus")
    parser.add_argument("--no-fallback", action="store_true", help="skip the classical fallback")
    parser.add_argument("--no-baseline", action="store_true", help="skip 1024 (no ratios printed)")
    args = parser.parse_args()
    if settings.HOME_ENV not in os.environ:
        sys.exit("set POSTER_ASSETS_HOME to a scratch folder: this benchmark edits its models/manifest.json")
    home = settings.home_dir()
    models_dir = settings.models_dir(home)
    models_dir.mkdir(parents=True, exist_ok=True)
    sizes = {int(s) for s in args.sizes.split(",")} | (set() if args.no_baseline else {BASELINE})

    corpus = args.corpus or home / f"fg_bench_corpus_seed{args.seed}_n{args.n}"
    if not (corpus / "ground_truth.jsonl").is_file():
        generate_corpus(corpus, n=args.n, seed=args.seed)
    truths = sorted(load_ground_truth(corpus).values(), key=lambda t: t.file)[: args.n]
    if len(truths) < args.n:
        sys.exit(f"{corpus} holds {len(truths)} posters with ground truth, fewer than --n {args.n}")
    images = [np.asarray(Image.open(t.path).convert("RGB")) for t in truths]

    if model_status(get_spec(args.model, models_dir), models_dir).state != "present":
        t0 = time.perf_counter()
        pulled = pull(args.model, timeout=120, models_dir=models_dir)
        print(f"pulled {args.model} to {pulled.path} in {time.perf_counter() - t0:.1f} s")

    base = get_spec(args.model, models_dir)
    manifest = models_dir / "manifest.json"
    original = manifest.read_text() if manifest.exists() else None
    rows: list[Row] = []
    try:
        for size in sorted(sizes, reverse=True):
            t0 = time.perf_counter()
            seg = _at_size(models_dir, base, size, original)
            rows.append(_measure(f"{size}", seg, images, truths, time.perf_counter() - t0))
            print(f"  measured {size}: {rows[-1].version}", file=sys.stderr)
    finally:
        if original is None:
            manifest.unlink(missing_ok=True)
        else:
            manifest.write_text(original)
    if not args.no_fallback:
        empty = home / "fg_bench_no_models"  # no weights at all: the classical fallback runs
        empty.mkdir(exist_ok=True)
        seg = ForegroundSegmenter(empty)
        rows.append(_measure("fallback", seg, images, truths, 0.0))

    hint = runtime.core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    print(
        f"{args.model}: {len(images)} demo posters (seed {args.seed}), OpenVINO CPU, "
        f"{os.cpu_count()} cores, default precision {precision}"
    )
    ref = next((r for r in rows if r.label == str(BASELINE)), None)
    columns = (
        ("size", 8),
        ("fg IoU", 6),
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
            f"{r.label:>8}  {r.iou:6.3f}  {r.s_per_poster:8.3f}  {iou_ratio}  {paired}  {time_ratio}  "
            f"{r.compile_s:9.1f}  {r.version}"
        )


if __name__ == "__main__":
    main()
