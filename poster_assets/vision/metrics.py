"""Scores the demo corpus's ground truth is measured with: text, boxes, masks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _normalise_ws(text: str) -> str:
    return " ".join(text.split())


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def character_error_rate(pred: str, truth: str) -> float:
    """Levenshtein(pred, truth) / len(truth), case-sensitive, after collapsing whitespace.

    An empty truth scores 0 for an empty prediction and 1 otherwise (not infinity), so a
    corpus mean stays bounded.
    """
    pred, truth = _normalise_ws(pred), _normalise_ws(truth)
    if not truth:
        return 0.0 if not pred else 1.0
    return levenshtein(pred, truth) / len(truth)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two [x0, y0, x1, y1] boxes (x1/y1 exclusive)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask > (0.5 if mask.dtype.kind == "f" else 127)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks: bool, float probabilities (> 0.5) or uint8 (> 127). Two empties score 1."""
    a, b = _as_bool(a), _as_bool(b)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else float(np.count_nonzero(a & b) / union)


def share_inside(mask: np.ndarray, region: np.ndarray) -> float:
    """Share of ``mask``'s pixels that fall inside ``region`` (1 for an empty mask)."""
    mask, region = _as_bool(mask), _as_bool(region)
    n = np.count_nonzero(mask)
    return 1.0 if n == 0 else float(np.count_nonzero(mask & region) / n)
