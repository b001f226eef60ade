"""``python -m poster_assets.demo OUT [--n 200] [--seed 0]``: write a demo corpus."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from poster_assets.demo.corpus import generate_corpus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m poster_assets.demo", description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    summary = generate_corpus(args.out, n=args.n, seed=args.seed, workers=args.workers)
    print(f"wrote {summary.n} posters to {summary.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
