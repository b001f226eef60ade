"""Read a demo corpus's ground truth back; masks load only when asked for."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from poster_assets.demo.corpus import GROUND_TRUTH

Box = list[int]


@dataclass(frozen=True)
class GroundTruth:
    """What the generator drew for one poster. Boxes are [x0, y0, x1, y1], x1/y1 exclusive."""

    corpus_dir: Path
    file: str
    title: str  # the rendered lines (in the case drawn) joined by one space
    title_lines: list[str]
    title_box: Box
    title_line_boxes: list[Box]
    title_placement: str  # "top" | "middle" | "bottom"
    title_mask: str  # relative to corpus_dir
    foreground_mask: str
    layers: list[str]  # back to front, as drawn
    credits_box: Box | None
    genre: str
    font: str
    width: int
    height: int
    format: str  # PIL format name: "JPEG" | "PNG"
    extra: dict[str, Any] = field(default_factory=dict)  # the record's other fields

    @classmethod
    def from_record(cls, corpus_dir: Path, record: dict[str, Any]) -> GroundTruth:
        names = {f.name for f in fields(cls)} - {"corpus_dir", "extra"}
        missing = names - record.keys()
        if missing:
            raise ValueError(f"ground-truth record for {record.get('file')!r} lacks {sorted(missing)}")
        known = {k: v for k, v in record.items() if k in names}
        extra = {k: v for k, v in record.items() if k not in names}
        return cls(corpus_dir=Path(corpus_dir), extra=extra, **known)

    @property
    def path(self) -> Path:
        return self.corpus_dir / self.file

    def title_mask_array(self) -> np.ndarray:
        """bool HxW, True where title glyph ink (fill and outline) was drawn."""
        return _load_mask(self.corpus_dir / self.title_mask)

    def foreground_mask_array(self) -> np.ndarray:
        """bool HxW, True where the subject was pasted (its alpha >= 0.5)."""
        return _load_mask(self.corpus_dir / self.foreground_mask)


def _load_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) >= 128


def load_ground_truth(corpus_dir: Path) -> dict[str, GroundTruth]:
    """Ground truth of a generated corpus, keyed by poster file name (relative to the corpus)."""
    corpus_dir = Path(corpus_dir)
    out: dict[str, GroundTruth] = {}
    with open(corpus_dir / GROUND_TRUTH, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                gt = GroundTruth.from_record(corpus_dir, json.loads(line))
                out[gt.file] = gt
    return out
