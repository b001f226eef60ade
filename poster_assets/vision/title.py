"""Which OCR text is the poster's title.

The title's pixels are what the title layer is cut from, so picking the wrong text (credits,
a rating badge, halftone dots read as letters) puts the wrong ink on top. OCR detectors box a
title word by word and line by line; the words of one row are joined first, then the
best-scoring line grows by the lines above and below it that look like the same title.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from poster_assets.vision.text_ink import as_box

_TITLE_LINE_MIN_CONF = 0.7  # a garbled read (halftone dots as 'wwww') must not join the title


@dataclass
class TitleChoice:
    """The most prominent text: its line boxes (1-2 lines merged), their union and text."""

    box: list[int]
    lines: list[list[int]]
    text: str
    score: float


def _ocr_fields(item: Any) -> tuple[list[int], str, float]:
    if isinstance(item, dict):
        box = item.get("box", item.get("polygon"))
        return as_box(box), str(item.get("text", "")), float(item.get("confidence", item.get("score", 1.0)))
    box, text, conf = item
    return as_box(box), str(text), float(conf)


def ocr_boxes(ocr_items: Sequence[Any]) -> list[list[int]]:
    """[x0, y0, x1, y1] of every OCR item ``(box_or_polygon, text, confidence)`` (or dict)."""
    return [_ocr_fields(item)[0] for item in ocr_items]


def _title_score(box: list[int], text: str, conf: float, shape: tuple[int, ...]) -> float:
    """Big, confident, horizontally centred text with a few letters scores high."""
    h, w = shape[:2]
    bh, bw = max(1, box[3] - box[1]), max(1, box[2] - box[0])
    letters = sum(c.isalnum() for c in text)
    if letters == 0:
        return 0.0
    centred = 1.0 - min(1.0, abs((box[0] + box[2]) / 2 / w - 0.5) * 2)
    width_share = min(1.0, bw / w / 0.3)  # a one-letter fleck is not a title
    return conf * (bh / h) * (0.7 + 0.3 * centred) * (0.5 + 0.5 * width_share) * min(1.0, letters / 3)


def _same_row(a: list[int], b: list[int]) -> bool:
    """b continues a's line to the right: the detector often boxes a title word by word."""
    ha, hb = a[3] - a[1], b[3] - b[1]
    if ha <= 0 or hb <= 0 or not (0.7 <= hb / ha <= 1.4):
        return False
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    gap = b[0] - a[2]
    return overlap >= 0.6 * min(ha, hb) and -0.5 * min(ha, hb) <= gap <= 1.0 * max(ha, hb)


def _join_words(items: list[tuple[list[int], str, float]]) -> list[tuple[list[int], str, float]]:
    """Merge boxes that sit side by side on one row into one line (left to right)."""
    rest = sorted(items, key=lambda it: it[0][0])
    lines: list[tuple[list[int], str, float]] = []
    while rest:
        box, text, conf = rest.pop(0)
        merged = True
        while merged:
            merged = False
            for i, (b, t, c) in enumerate(rest):
                if _same_row(box, b):
                    box = [min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3])]
                    text, conf = f"{text.strip()} {t.strip()}", min(conf, c)
                    rest.pop(i)
                    merged = True
                    break
        lines.append((box, text, conf))
    return lines


def _same_line_family(a: list[int], b: list[int]) -> bool:
    """b can continue a's title: similar height, similar x-centre, vertically adjacent."""
    ha, hb = a[3] - a[1], b[3] - b[1]
    if ha <= 0 or hb <= 0 or not (0.6 <= hb / ha <= 1.6):
        return False
    wa = a[2] - a[0]
    tol = 0.5 * min(ha, hb)
    centred = abs((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) <= max(0.25 * max(wa, b[2] - b[0]), 0.5 * ha)
    # Left- or right-aligned title blocks are as common as centred ones.
    if not (centred or abs(a[0] - b[0]) <= tol or abs(a[2] - b[2]) <= tol):
        return False
    gap = max(b[1] - a[3], a[1] - b[3])
    return gap <= 0.8 * max(ha, hb)


def title_box(ocr_items: Sequence[Any], image_shape: tuple[int, ...]) -> TitleChoice | None:
    """Pick the title among OCR items ``(box_or_polygon, text, confidence)`` (or dicts).

    The best-scoring box is the title's first line; vertically adjacent boxes of similar height
    and x-centre join it (two-line titles), reading top to bottom.
    """
    items = _join_words([_ocr_fields(it) for it in ocr_items])
    scored = [(_title_score(b, t, c, image_shape), b, t, c) for b, t, c in items]
    scored = [s for s in scored if s[0] > 0]
    confs = [s[3] for s in scored]
    if not scored:
        return None
    best_i = max(range(len(scored)), key=lambda i: scored[i][0])
    chosen = [best_i]
    grew = True
    while grew:  # grow one line at a time, above or below the current block
        grew = False
        for i, (_, b, _t, _c) in enumerate(scored):
            if i in chosen or confs[i] < _TITLE_LINE_MIN_CONF:
                continue
            if any(_same_line_family(scored[j][1], b) for j in chosen):
                chosen.append(i)
                grew = True
    chosen.sort(key=lambda i: scored[i][1][1])
    lines = [list(scored[i][1]) for i in chosen]
    corners = np.array(lines)
    union = [int(v) for v in (*corners[:, :2].min(axis=0), *corners[:, 2:].max(axis=0))]
    text = " ".join(scored[i][2].strip() for i in chosen)
    return TitleChoice(box=union, lines=lines, text=text, score=float(scored[best_i][0]))
