"""Write a demo corpus: posters, a sidecar and ground truth (masks under ``gt/``)."""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from poster_assets.demo.poster import RenderedPoster, mask_box, plan_poster, render_poster

SIDECAR = "sidecar.jsonl"
GROUND_TRUTH = "ground_truth.jsonl"
GT_DIR = "gt"
_JPEG_QUALITY = 90
_PARALLEL_FROM = 24  # below this a process pool costs more than it saves


@dataclass(frozen=True)
class CorpusSummary:
    n: int
    out: Path
    sidecar: Path
    ground_truth: Path
    files: tuple[str, ...]


def _write_atomic(path: Path, save) -> None:
    """Write through a temporary name so a crash never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    save(tmp)
    os.replace(tmp, path)


def _save_image(image: Image.Image, path: Path, fmt: str) -> None:
    # Fixed encoder settings (no optimize pass, no metadata): same pixels give the same bytes.
    if fmt == "JPEG":
        _write_atomic(path, lambda p: image.save(p, "JPEG", quality=_JPEG_QUALITY, subsampling=2))
    else:
        _write_atomic(path, lambda p: image.save(p, "PNG", compress_level=1))


def _records(r: RenderedPoster, title_mask: str, fg_mask: str) -> tuple[dict, dict]:
    plan = r.plan
    sidecar = {"file": plan.file, "title": plan.title, "genres": list(plan.genres), "year": plan.year}
    gt = {
        "file": plan.file,
        "title": " ".join(r.title_lines),
        "title_lines": r.title_lines,
        "title_box": r.title_box,
        "title_line_boxes": r.title_line_boxes,
        "title_placement": plan.placement,
        "title_mask": title_mask,
        "foreground_mask": fg_mask,
        "layers": r.layers,
        "credits_box": r.credits_box,
        "genre": plan.genre,
        "font": plan.face,
        "width": plan.width,
        "height": plan.height,
        "format": plan.format,
        # Beyond the required fields: what else was drawn, for finer-grained benchmarks.
        "genres": list(plan.genres),
        "year": plan.year,
        "font_size": r.font_size,
        "title_outline": r.outline,
        "credits_text": r.credits_text,
        "tagline": plan.tagline if r.tagline_box else None,
        "tagline_box": r.tagline_box,
        "subject": plan.subject,
        "subject_shape": plan.shape,
        "background": plan.background,
        "foreground_box": mask_box(r.foreground_mask),
    }
    return sidecar, gt


def _make_one(args: tuple[Path, int, int]) -> tuple[dict, dict]:
    out, seed, index = args
    rendered = render_poster(plan_poster(seed, index))
    stem = rendered.plan.file.split("_", 1)[0]
    title_mask, fg_mask = f"{GT_DIR}/{stem}_title.png", f"{GT_DIR}/{stem}_fg.png"
    _save_image(Image.fromarray(rendered.image), out / rendered.plan.file, rendered.plan.format)
    for rel, mask in ((title_mask, rendered.title_mask), (fg_mask, rendered.foreground_mask)):
        _save_image(Image.fromarray(mask.astype(np.uint8) * 255, mode="L"), out / rel, "PNG")
    return _records(rendered, title_mask, fg_mask)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(row, sort_keys=False) + "\n" for row in rows)
    _write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def generate_corpus(out: Path, n: int = 200, seed: int = 0, workers: int | None = None) -> CorpusSummary:
    """Write ``n`` posters with sidecar and ground truth to ``out``; same seed, same bytes.

    ``workers`` processes draw the posters (default: all cores for corpora of 24 and more);
    each poster's randomness comes from (seed, index) alone, so the count does not matter.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    out = Path(out)
    (out / GT_DIR).mkdir(parents=True, exist_ok=True)
    jobs = [(out, seed, i) for i in range(1, n + 1)]
    if workers is None:
        workers = (os.cpu_count() or 1) if n >= _PARALLEL_FROM else 1
    if workers > 1:
        # spawn, not fork: callers (Dagster, the webserver) may have threads running.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(pool.map(_make_one, jobs, chunksize=4))
    else:
        results = [_make_one(job) for job in jobs]
    sidecar, gt = out / SIDECAR, out / GROUND_TRUTH
    _write_jsonl(sidecar, [s for s, _ in results])
    _write_jsonl(gt, [g for _, g in results])
    return CorpusSummary(
        n=n, out=out, sidecar=sidecar, ground_truth=gt, files=tuple(s["file"] for s, _ in results)
    )
