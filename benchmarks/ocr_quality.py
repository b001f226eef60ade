"""OCR title accuracy and speed on the demo corpus (the generator's ground truth is the reference).

"The title" read by OCR is every OCR line whose box centre lies in the ground-truth
``title_box``, joined in reading order with one space. Both sides
are whitespace-normalised (runs of spaces -> one, stripped) and compared case-sensitively.
Prints exact-match rate, CER (edit distance / truth length, summed over the corpus) and
seconds per poster, for each configuration asked for, on the same corpus in the same process.

    python benchmarks/ocr_quality.py --n 40                       # product settings
    python benchmarks/ocr_quality.py --n 40 --compare-raw         # with / without word gaps
    python benchmarks/ocr_quality.py --n 40 --det-limit 736 960   # detector input sizes
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from poster_assets.demo import generate_corpus, load_ground_truth
from poster_assets.models.ocr import OcrEngine, OcrItem


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalise(text: str) -> str:
    return " ".join(text.split())


def title_text(items: list[OcrItem], title_box: list[int]) -> str:
    """The OCR lines whose box centre lies inside ``title_box``, in reading order (centres, not
    overlap: detector boxes are unclipped beyond the ink, so they stick out of a tight box)."""
    tx0, ty0, tx1, ty1 = title_box
    picked = []
    for item in items:
        x0, y0, x1, y1 = item.box
        if tx0 <= (x0 + x1) / 2 < tx1 and ty0 <= (y0 + y1) / 2 < ty1:
            picked.append(item)
    return " ".join(i.text for i in sorted(picked, key=lambda i: i.order))


def evaluate(engine: OcrEngine, posters: list[tuple[np.ndarray, str, list[int]]]) -> dict:
    exact, errors, chars, seconds, misses = 0, 0, 0, 0.0, []
    for rgb, truth, box in posters:
        t0 = time.perf_counter()
        items = engine.read(rgb)
        seconds += time.perf_counter() - t0
        got, want = normalise(title_text(items, box)), normalise(truth)
        exact += got == want
        errors += edit_distance(got, want)
        chars += len(want)
        if got != want:
            misses.append((want, got))
    n = len(posters)
    return {"exact": exact / n, "cer": errors / max(1, chars), "s_per_poster": seconds / n, "misses": misses}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=None, help="an existing demo corpus (else generated)")
    parser.add_argument("--det-limit", type=int, nargs="*", default=[None], help="Det.limit_side_len values")
    parser.add_argument("--compare-raw", action="store_true", help="also run without the word-gap pass")
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ocr-quality-") as tmp:
        corpus = args.corpus or Path(tmp) / "corpus"
        if args.corpus is None:
            generate_corpus(corpus, n=args.n, seed=args.seed)
        truth = sorted(load_ground_truth(corpus).values(), key=lambda g: g.file)[: args.n]
        posters = []
        for gt in truth:
            with Image.open(gt.path) as im:
                posters.append((np.asarray(im.convert("RGB")), gt.title, gt.title_box))

    configs = [(limit, True) for limit in args.det_limit]
    if args.compare_raw:
        configs = [(limit, False) for limit in args.det_limit] + configs
    print(f"{len(posters)} posters, sizes {sorted({p[0].shape[:2] for p in posters})}")
    for limit, gaps in configs:
        engine = OcrEngine(det_limit_side_len=limit, word_gaps=gaps)
        engine.read(posters[0][0])  # warm-up: first-inference allocations are not OCR speed
        r = evaluate(engine, posters)
        label = f"det_limit={limit or 'default'} word_gaps={'on' if gaps else 'off'}"
        print(
            f"{label:34s} exact {r['exact']:.3f}  CER {r['cer']:.4f}  "
            f"{1000 * r['s_per_poster']:.0f} ms/poster   [{engine.version}]"
        )
        if args.show_misses:
            for want, got in r["misses"]:
                print(f"    truth {want!r:40s} ocr {got!r}")


if __name__ == "__main__":
    main()
