"""OCR on large scans: the detector's short side capped (``ocr.DET_MAX_SHORT_SIDE``) or not.

    POSTER_ASSETS_OFFLINE=1 .venv/bin/python benchmarks/ocr_large_scans.py [--n 40] [--scale 2] \\
        [--caps 1024,1280,736,none] [--corpus poster_data/demo_corpus]

Demo posters (the first ``--n`` of ``--corpus``, else generated) are scaled up by ``--scale``
(bicubic; 2 makes the demo's 1000x1500 posters 2000x3000 scans) and read with ``read_many`` as
the ``ocr_text`` asset reads them, once per cap, each in a fresh process (peak RSS per cap).
Prints per cap: ms per poster, detector ms per poster (summed over the pool's engines), the
detector's input shapes, how many titles were found among the lines (the ground truth's title
equal, case and spaces aside, to a line or two consecutive lines) and the peak RSS. ``none``
is rapidocr's own behaviour (a larger poster at its own size, up to 2000 px long).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_NO_CAP = 10**6


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _child(corpus: Path, n: int, scale: float, cap: int) -> dict:
    import cv2
    from PIL import Image

    from poster_assets.models import ocr
    from poster_assets.models.ocr import OcrEngine, profile_inference

    ocr.DET_MAX_SHORT_SIDE = cap  # read by det_resize at each call
    truth = {}
    for line in (corpus / "ground_truth.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        truth[record["file"]] = _norm(record["title"])
    files = sorted(p for p in corpus.iterdir() if p.name in truth)[:n]
    images = [
        cv2.resize(
            np.asarray(Image.open(f).convert("RGB")), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC
        )
        for f in files
    ]
    engine = OcrEngine()
    engine.read_many(images[:4])  # warm-up: the pool and its first shapes
    with profile_inference() as profile:
        t0 = time.perf_counter()
        found = engine.read_many(images)
        wall = time.perf_counter() - t0
    titles = 0
    for f, items in zip(files, found, strict=True):
        texts = [_norm(i.text) for i in items]
        joined = set(texts) | {f"{a} {b}" for a, b in zip(texts, texts[1:], strict=False)}
        titles += truth[f.name] in joined
    det = sorted({shape[2:] for (name, shape) in profile.calls if name == "ppocr-det"})
    status = Path("/proc/self/status").read_text()
    return {
        "size": list(images[0].shape[:2]),
        "ms": 1000 * wall / len(images),
        "det_ms": 1000 * profile.seconds("ppocr-det") / len(images),
        "det_shapes": [list(s) for s in det[:3]],
        "titles": titles,
        "n": len(files),
        "peak_mb": int(status.split("VmHWM:")[1].split()[0]) // 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--scale", type=float, default=2.0)
    ap.add_argument("--caps", default="1024,none", help="short-side caps to compare; none: uncapped")
    ap.add_argument("--corpus", type=Path, default=None, help="a demo corpus (default: generated)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        corpus, n, scale, cap = args.child
        print(json.dumps(_child(Path(corpus), int(n), float(scale), int(cap))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            from poster_assets.demo import generate_corpus

            corpus = generate_corpus(Path(tmp) / "corpus", n=args.n).out
        print(f"{args.n} demo posters scaled by {args.scale}, read_many; one process per cap")
        for cap_text in args.caps.split(","):
            cap = _NO_CAP if cap_text.strip() == "none" else int(cap_text)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(corpus), str(args.n), str(args.scale), str(cap)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            label = "none" if cap == _NO_CAP else str(cap)
            print(
                f"  cap {label:>5}: {r['size'][0]}x{r['size'][1]} posters, {r['ms']:.0f} ms/poster, "
                f"detector {r['det_ms']:.0f} ms at {r['det_shapes']}, titles found {r['titles']}/{r['n']}, "
                f"peak RSS {r['peak_mb']} MB"
            )


if __name__ == "__main__":
    main()
