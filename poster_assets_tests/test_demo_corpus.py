"""The demo corpus generator: determinism, file layout, and ground truth that matches the pixels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from poster_assets.demo import generate_corpus, load_ground_truth, plan_poster, render_poster
from poster_assets.demo.text import contrast_ratio

N = 20


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _corpus_hashes(out: Path, files: list[str]) -> dict[str, str]:
    """Hashes of each poster and its two masks, keyed by path relative to the corpus."""
    gts = {r["file"]: r for r in _jsonl(out / "ground_truth.jsonl")}
    rels = [p for f in files for p in (f, gts[f]["title_mask"], gts[f]["foreground_mask"])]
    return {rel: _sha(out / rel) for rel in rels}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    summary = generate_corpus(out, n=N, seed=0)
    assert summary.n == N and summary.out == out and len(summary.files) == N
    assert summary.sidecar.is_file() and summary.ground_truth.is_file()
    return out


@pytest.fixture(scope="module")
def records(corpus) -> list[dict]:
    return _jsonl(corpus / "ground_truth.jsonl")


@pytest.mark.slow
def test_same_seed_gives_identical_bytes_whatever_the_worker_count(corpus, tmp_path):
    # A second run in two worker processes with a smaller n: poster i depends on (seed, i) alone.
    again = generate_corpus(tmp_path, n=6, seed=0, workers=2)
    files = list(again.files)
    assert files == [r["file"] for r in _jsonl(corpus / "sidecar.jsonl")][:6]
    assert _corpus_hashes(tmp_path, files) == _corpus_hashes(corpus, files)
    assert _jsonl(again.sidecar) == _jsonl(corpus / "sidecar.jsonl")[:6]
    assert _jsonl(again.ground_truth) == _jsonl(corpus / "ground_truth.jsonl")[:6]


def test_other_seed_gives_other_posters(corpus, tmp_path):
    other = generate_corpus(tmp_path, n=6, seed=1)
    base = _jsonl(corpus / "sidecar.jsonl")[:6]
    assert [r["title"] for r in _jsonl(other.sidecar)] != [r["title"] for r in base]
    ours = {_sha(corpus / r["file"]) for r in base}
    assert ours.isdisjoint(_sha(tmp_path / f) for f in other.files)


def test_sidecar_and_ground_truth_correspond_line_for_line(corpus, records):
    sidecar = _jsonl(corpus / "sidecar.jsonl")
    assert len(sidecar) == len(records) == N
    for i, (s, g) in enumerate(zip(sidecar, records, strict=True), start=1):
        assert set(s) == {"file", "title", "genres", "year"}
        assert s["file"] == g["file"] and s["file"].startswith(f"{i:04d}_")
        assert (corpus / s["file"]).is_file()
        assert s["genres"][0] == g["genre"] and 1 <= len(s["genres"]) <= 2
        assert isinstance(s["year"], int) and 1950 <= s["year"] <= 2030
        # The sidecar has the catalogue title; the ground truth the text as drawn (maybe upper case).
        assert s["title"].lower() == g["title"].lower()
        assert g["title"] == " ".join(g["title_lines"]) and 1 <= len(g["title_lines"]) <= 2


def test_sizes_and_formats(corpus, records):
    formats = set()
    for g in records:
        with Image.open(corpus / g["file"]) as im:
            assert im.format == g["format"] and im.mode == "RGB"
            assert im.size == (g["width"], g["height"])
        assert 600 <= g["width"] <= 1000 and g["height"] * 2 == g["width"] * 3
        assert Path(g["file"]).suffix == {"JPEG": ".jpg", "PNG": ".png"}[g["format"]]
        for key in ("title_mask", "foreground_mask"):
            with Image.open(corpus / g[key]) as m:
                assert (m.mode, m.size) == ("L", (g["width"], g["height"]))
                assert set(np.unique(np.asarray(m))) <= {0, 255}
        formats.add(g["format"])
    assert formats == {"JPEG", "PNG"}


def test_corpus_covers_layouts_fonts_and_genres(records):
    assert {g["title_placement"] for g in records[:12]} == {"top", "middle", "bottom"}
    assert len({g["font"] for g in records}) >= 3
    assert len({g["genre"] for g in records}) >= 5
    assert {len(g["title_lines"]) for g in records} == {1, 2}
    assert any(g["credits_box"] for g in records)
    for g in records:
        assert g["layers"][:3] == ["background", "subject", "title"]


def test_title_box_is_the_tight_box_of_the_title_mask(corpus):
    for gt in load_ground_truth(corpus).values():
        mask = gt.title_mask_array()
        x0, y0, x1, y1 = gt.title_box
        assert mask.any() and not mask[:y0].any() and not mask[y1:].any()
        assert not mask[:, :x0].any() and not mask[:, x1:].any()
        # Tight: ink touches every edge of the box.
        assert mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any()
        assert mask[y0:y1, x0].any() and mask[y0:y1, x1 - 1].any()
        boxes = np.asarray(gt.title_line_boxes)
        assert len(boxes) == len(gt.title_lines)
        assert [boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()] == gt.title_box
        assert all(a[3] <= b[1] for a, b in zip(boxes, boxes[1:], strict=False))  # lines top to bottom
        placement = {"top": (0.0, 0.35), "middle": (0.25, 0.75), "bottom": (0.6, 1.0)}[gt.title_placement]
        centre = (y0 + y1) / 2 / gt.height
        assert placement[0] <= centre <= placement[1], (gt.file, gt.title_placement, centre)


def test_title_is_legible_where_the_mask_says_it_is(corpus):
    """Inside the glyphs the colour stands off its surround (outline or background)."""
    for gt in load_ground_truth(corpus).values():
        img = np.asarray(Image.open(gt.path).convert("RGB"), np.float32) / 255.0
        mask = gt.title_mask_array().astype(np.uint8)
        stroke = max(2, round(gt.extra["font_size"] * 0.05)) if gt.extra["title_outline"] else 0
        core = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=stroke + 1).astype(bool)
        if gt.extra["title_outline"]:
            ring = mask.astype(bool) & ~core  # the outline band
        else:
            ring = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=3).astype(bool) & ~mask.astype(bool)
        assert core.sum() > 200, gt.file
        ratio = contrast_ratio(np.median(img[core], axis=0), np.median(img[ring], axis=0))
        assert ratio >= 2.5, (gt.file, float(ratio))


def test_credits_are_smaller_than_the_title_and_apart_from_it(records):
    for g in records:
        if g["credits_box"] is None:
            continue
        cx0, cy0, cx1, cy1 = g["credits_box"]
        line_h = min(b[3] - b[1] for b in g["title_line_boxes"])
        assert (cy1 - cy0) / len(g["credits_text"]) < line_h / 2
        assert g["title_box"][3] <= cy0  # the billing block sits below the title


def test_foreground_mask_is_where_the_subject_changed_the_pixels(corpus):
    gts = list(load_ground_truth(corpus).values())
    for gt in gts[:8]:
        plan = plan_poster(0, int(gt.file[:4]))
        with_subject, without = render_poster(plan), render_poster(plan, subject=False)
        assert np.array_equal(with_subject.foreground_mask, gt.foreground_mask_array())
        assert np.array_equal(with_subject.title_mask, gt.title_mask_array())
        fg = with_subject.foreground_mask
        assert fg.mean() > 0.03, gt.file
        diff = np.abs(with_subject.image.astype(np.int16) - without.image.astype(np.int16)).max(axis=2)
        # Text may be drawn differently over a different backdrop (colour, outline): leave it out.
        text = np.zeros_like(fg)
        pad = gt.extra["font_size"]
        for box in (gt.title_box, gt.credits_box, gt.extra["tagline_box"]):
            if box:
                text[max(0, box[1] - pad) : box[3] + pad, max(0, box[0] - pad) : box[2] + pad] = True
        # Outside the mask only the soft edge (about two blur widths) may change.
        far = cv2.distanceTransform((~fg).astype(np.uint8), cv2.DIST_L2, 3) > 0.03 * gt.width
        changed = (diff > 12) & ~text
        assert changed[far].mean() < 0.002, gt.file
        inside = fg & ~text
        assert changed[inside].mean() > 0.85, gt.file
        assert (changed & inside).sum() / (changed | inside).sum() > 0.8, gt.file


def test_ground_truth_loads_lazily_with_extras(corpus):
    gts = load_ground_truth(corpus)
    assert len(gts) == N
    gt = next(iter(gts.values()))
    assert gt.path.is_file() and gt.title_placement in {"top", "middle", "bottom"}
    assert {"year", "genres", "subject", "background"} <= gt.extra.keys()
    fg = gt.foreground_mask_array()
    assert fg.dtype == bool and fg.shape == (gt.height, gt.width) and fg.any()
