"""SimSiam pairs built from the extracted structure.

SimSiam has no negatives, so the structure decides what counts as "the same thing":

======================  ==========================================  ======  =============
pair kind               view 1 / view 2                             weight  aux labels on
======================  ==========================================  ======  =============
``subject``             two augmentations of the subject crop       1.0     neither view
``poster``              two augmentations of the whole poster       1.0     both views
``title_subject``       title crop / subject crop (cross-view)      0.5     neither view
======================  ==========================================  ======  =============

The cross-view pair ties the title's type and colour to the subject of the same poster, a
weaker relation, hence its lower weight. Posters without a title box draw ``subject`` instead
of ``title_subject``. Auxiliary labels (title placement, layer count, has text) describe the
whole poster, so they are only asked of whole-poster views (a title placement cannot be read
from a subject crop). Views (``ssl.augment``) are turned into network input by
``models.efficientnet_lite.preprocess``, the same preprocessing the exported embedder uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from poster_assets.models.efficientnet_lite import preprocess
from poster_assets.ssl.augment import Augment, subject_view, title_view
from poster_assets.ssl.labels import TrainItem

PAIR_KINDS = ("subject", "poster", "title_subject")
PAIR_PROBABILITIES = (0.4, 0.35, 0.25)
PAIR_WEIGHTS = {"subject": 1.0, "poster": 1.0, "title_subject": 0.5}
# Posters are cached at this multiple of the training size: enough pixels for a small title
# crop, small enough that a few thousand posters fit in memory.
_CACHE_SCALE = 4


@dataclass
class _Sources:
    whole: np.ndarray
    subject: np.ndarray
    title: np.ndarray | None


class PairDataset(torch.utils.data.Dataset):
    """SimSiam pairs (see the module docstring) with the auxiliary labels of each poster, at
    ``size`` px (the training size, ``TrainConfig.image_size``).

    ``pair(i, rng)`` draws one pair with the caller's generator (the trainer seeds one per
    step, so sampling is reproducible); ``__getitem__`` seeds from ``(seed, i)``. Decoded
    posters are cached downscaled to ``_CACHE_SCALE`` x ``size`` on their long side.
    """

    def __init__(self, items: Sequence[TrainItem], size: int, seed: int = 0) -> None:
        self.items = list(items)
        self.size = size
        self.seed = seed
        self.augment = Augment(size=size)
        # Whole-poster views keep most of the poster so the title placement label stays true.
        self.poster_augment = Augment(size=size, scale=(0.7, 1.0), ratio=(0.9, 1.1))
        self.title_augment = Augment(size=size, scale=(0.6, 1.0), ratio=(0.8, 1.25))
        self._cache: dict[int, _Sources] = {}

    def __len__(self) -> int:
        return len(self.items)

    def sources(self, index: int) -> _Sources:
        if index not in self._cache:
            item = self.items[index]
            # Shrink first: the subject's background blur costs seconds at full resolution.
            rgb = _shrink(item.load_rgb(), self.size * _CACHE_SCALE)
            self._cache[index] = _Sources(
                whole=rgb,
                subject=subject_view(item, rgb, item.load_foreground()),
                title=title_view(item, rgb),
            )
        return self._cache[index]

    def pair(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        item, src = self.items[index], self.sources(index)
        kind = PAIR_KINDS[int(rng.choice(len(PAIR_KINDS), p=PAIR_PROBABILITIES))]
        if kind == "title_subject" and src.title is None:
            kind = "subject"
        if kind == "subject":
            a, b = self.augment(src.subject, rng), self.augment(src.subject, rng)
        elif kind == "poster":
            a, b = self.poster_augment(src.whole, rng), self.poster_augment(src.whole, rng)
        else:
            a, b = self.title_augment(src.title, rng), self.augment(src.subject, rng)
        views = preprocess([a, b], self.size)
        return {
            "view1": torch.from_numpy(views[0]),
            "view2": torch.from_numpy(views[1]),
            "weight": torch.tensor(PAIR_WEIGHTS[kind]),
            "aux_mask": torch.tensor(1.0 if kind == "poster" else 0.0),
            "placement": torch.tensor(item.placement_index),
            "layers": torch.tensor(item.layer_bucket),
            "has_text": torch.tensor(float(item.has_text)),
            "kind": torch.tensor(PAIR_KINDS.index(kind)),
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.pair(index, np.random.default_rng([self.seed, index]))


def collate(pairs: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([p[k] for p in pairs]) for k in pairs[0]}


def _shrink(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        return np.ascontiguousarray(rgb)
    s = side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
