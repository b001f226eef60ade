"""Training items and SimSiam pairs built from the extracted structure.

``load_training_items`` reads everything training needs from the store once (paths, boxes,
labels); the Dataset then only reads blob files, never the database.

Labels come from the dbt model ``marts.ssl_labels`` when it has been built. Without it (a
store where only the extractors ran) the same labels are computed from the base tables by
``_LABELS_FROM_BASE_SQL``, a condensed copy of ``poster_annotations`` + ``ssl_labels``: each
asset's newest ok extraction per poster, title placement by the title box's vertical third,
the same difficulty weights. ``TrainItem.labels_source`` says which one was used.

Pairs. SimSiam has no negatives, so the structure decides what counts as "the same thing":

======================  ==========================================  ======  =============
pair kind               view 1 / view 2                             weight  aux labels on
======================  ==========================================  ======  =============
``subject``             two augmentations of the subject crop       1.0     neither view
``poster``              two augmentations of the whole poster       1.0     both views
``title_subject``       title crop / subject crop (cross-view)      0.5     neither view
======================  ==========================================  ======  =============

The subject crop is the foreground box (else the subject layer's box) with the background
blended to a blur, exactly as the ``foreground`` embedding kind feeds the ImageNet model. The
title crop is the OCR title box, grown a little. The cross-view pair ties the title's type
and colour to the subject of the same poster, a weaker relation, hence its lower weight.
Posters without a title box draw ``subject`` instead of ``title_subject``. Auxiliary labels
(title placement, layer count, has text) describe the whole poster, so they are only asked
of whole-poster views (a title placement cannot be read from a subject crop).

Every view is a random resized crop of its source, letterboxed to a square (as at inference),
then flipped, colour-jittered, turned grey and blurred at random, in numpy/OpenCV.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from poster_assets.extract.runner import PosterRef, load_rgb
from poster_assets.models.efficientnet_lite import letterbox
from poster_assets.search.embed import foreground_crop
from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.database import Database

PLACEMENTS = ("top", "middle", "bottom", "none")
LAYER_BUCKETS = ("2", "3", "4", "5+")
PAIR_KINDS = ("subject", "poster", "title_subject")
PAIR_PROBABILITIES = (0.4, 0.35, 0.25)
PAIR_WEIGHTS = {"subject": 1.0, "poster": 1.0, "title_subject": 0.5}
# Same scaling as the EfficientNet-Lite0 weights (TF release: pixels to [-1, 1]).
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
# Posters are cached at this multiple of the training size: enough pixels for a small title
# crop, small enough that a few thousand posters fit in memory.
_CACHE_SCALE = 4
_TITLE_PAD = 0.15


@dataclass(frozen=True)
class TrainItem:
    """One poster's inputs and labels; plain values, picklable, no database handle."""

    poster_id: str
    home: Path  # store home: blob paths below are relative to it
    original_path: str
    file_name: str
    width: int
    height: int
    foreground_path: str | None
    foreground_bbox: tuple[int, int, int, int] | None
    labels_path: str | None  # layer label PNG: pixel value = layer_index
    layer_roles: dict[int, str] = field(default_factory=dict)
    subject_bbox: tuple[int, int, int, int] | None = None
    title_box: tuple[int, int, int, int] | None = None
    title_placement: str = "none"
    layer_count: int = 0
    has_text: bool = False
    foreground_bucket: str = "unknown"
    primary_genre: str = "unknown"
    difficulty: float = 0.0
    curriculum_rank: int = 0
    label_version: str = ""  # layers | foreground | ocr model versions behind the labels
    labels_source: str = "marts.ssl_labels"

    @property
    def placement_index(self) -> int:
        return PLACEMENTS.index(self.title_placement) if self.title_placement in PLACEMENTS else 3

    @property
    def layer_bucket(self) -> int:
        return int(np.clip(self.layer_count, 2, 5)) - 2

    def load_rgb(self) -> np.ndarray:
        return load_rgb(BlobStore(self.home), PosterRef(self.poster_id, self.original_path, self.file_name))

    def load_foreground(self) -> np.ndarray | None:
        """Foreground probability (float32 in [0, 1]) at the mask's own resolution."""
        if self.foreground_path is None:
            return None
        with Image.open(self.home / self.foreground_path) as im:
            return np.asarray(im.convert("L"), dtype=np.float32) / 255.0

    def load_subject_layer(self) -> np.ndarray | None:
        """1.0 on the subject layer's pixels, from the layer label PNG."""
        subject = [i for i, role in self.layer_roles.items() if role == "subject"]
        if self.labels_path is None or not subject:
            return None
        with Image.open(self.home / self.labels_path) as im:
            labels = np.asarray(im)
        return np.isin(labels, subject).astype(np.float32)


_LABELS_FROM_BASE_SQL = """
WITH posters AS (
    SELECT poster_id, width, height, genres FROM raw_posters WHERE status = 'ok'
    QUALIFY row_number() OVER (PARTITION BY poster_id ORDER BY ingested_at, source_uri) = 1
),
cur AS (
    SELECT asset, poster_id, model_version FROM extractions WHERE status = 'ok'
    QUALIFY row_number() OVER (
        PARTITION BY asset, poster_id ORDER BY extracted_at DESC, model_version DESC) = 1
),
ocr AS (
    SELECT c.poster_id, c.model_version AS ocr_version, count(o.line_index) AS ocr_lines,
           avg(o.confidence) AS ocr_conf, arg_min(o.box, o.line_index) AS first_box
    FROM cur c LEFT JOIN ocr_text o ON o.poster_id = c.poster_id AND o.model_version = c.model_version
    WHERE c.asset = 'ocr_text' GROUP BY ALL
),
layers AS (
    SELECT l.* FROM layer_masks l
    JOIN cur c ON c.asset = 'layer_masks' AND c.poster_id = l.poster_id AND c.model_version = l.model_version
),
lc AS (SELECT poster_id, any_value(model_version) AS layers_version, count(*) AS layer_count
       FROM layers GROUP BY poster_id),
title AS (
    SELECT poster_id, title_box FROM layers WHERE role = 'title' AND title_text IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY poster_id ORDER BY area_fraction DESC, layer_index) = 1
),
fg AS (
    SELECT f.poster_id, f.model_version AS foreground_version, f.area_fraction FROM foreground_masks f
    JOIN cur c
        ON c.asset = 'foreground_masks' AND c.poster_id = f.poster_id AND c.model_version = f.model_version
),
depth AS (SELECT poster_id FROM cur WHERE asset = 'depth_maps'),
labelled AS (
    SELECT p.poster_id, p.genres, lc.layer_count, o.ocr_lines, o.ocr_conf, f.area_fraction AS fg_area,
           lc.layers_version, f.foreground_version, o.ocr_version,
           coalesce(t.title_box, o.first_box) AS tbox, p.height
    FROM posters p JOIN lc USING (poster_id) JOIN fg f USING (poster_id) JOIN ocr o USING (poster_id)
    JOIN depth USING (poster_id) LEFT JOIN title t USING (poster_id)
),
placed AS (
    SELECT *, CASE
        WHEN tbox IS NULL THEN 'none'
        WHEN (tbox[2] + tbox[4]) / 2.0 < height / 3.0 THEN 'top'
        WHEN (tbox[2] + tbox[4]) / 2.0 < 2.0 * height / 3.0 THEN 'middle'
        ELSE 'bottom' END AS title_placement
    FROM labelled
),
scored AS (
    SELECT poster_id, title_placement, layer_count, ocr_lines > 0 AS has_text,
        CASE WHEN fg_area < 0.15 THEN 'small' WHEN fg_area < 0.40 THEN 'medium' ELSE 'large' END
            AS foreground_bucket,
        coalesce(lower(genres[1]), 'unknown') AS primary_genre,
        round(0.3 * least(1.0, greatest(0.0, (layer_count - 2) / 5.0))
            + 0.3 * (1.0 - least(1.0, fg_area / 0.5))
            + 0.2 * CASE WHEN ocr_lines = 0 THEN 1.0 ELSE 1.0 - least(1.0, greatest(0.0, ocr_conf)) END
            + 0.2 * CASE title_placement WHEN 'middle' THEN 1.0 WHEN 'none' THEN 0.5 ELSE 0.0 END, 4)
            AS difficulty,
        layers_version, foreground_version, ocr_version
    FROM placed
)
SELECT *, row_number() OVER (ORDER BY difficulty, poster_id) AS curriculum_rank FROM scored
"""

_LABEL_COLUMNS = (
    "poster_id, title_placement, layer_count, has_text, foreground_bucket, primary_genre, difficulty, "
    "curriculum_rank, layers_version, foreground_version, ocr_version"
)


def _has_ssl_labels(conn) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'marts' AND table_name = 'ssl_labels'"
        ).fetchone()[0]
    )


def _box(value) -> tuple[int, int, int, int] | None:
    return None if value is None else tuple(int(v) for v in value)  # type: ignore[return-value]


def load_training_items(db: Database, blobs: BlobStore, source: str = "auto") -> list[TrainItem]:
    """Every poster with complete labels, in curriculum order (easiest first).

    ``source``: ``"auto"`` (``marts.ssl_labels`` when built, else the base tables),
    ``"marts"`` or ``"base"``.
    """
    if source not in ("auto", "marts", "base"):
        raise ValueError(f"source must be 'auto', 'marts' or 'base', got {source!r}")
    with db.connect(read_only=True) as conn:
        use_marts = source == "marts" or (source == "auto" and _has_ssl_labels(conn))
        labels_sql = f"SELECT {_LABEL_COLUMNS} FROM marts.ssl_labels" if use_marts else _LABELS_FROM_BASE_SQL
        cursor = conn.execute(
            f"""
            WITH labels AS ({labels_sql}),
            originals AS (
                SELECT poster_id, original_path, file_name, width, height FROM raw_posters
                WHERE status = 'ok'
                QUALIFY row_number() OVER (PARTITION BY poster_id ORDER BY ingested_at, source_uri) = 1
            )
            SELECT l.*, o.original_path, o.file_name, o.width, o.height, f.mask_path, f.bbox AS fg_bbox
            FROM labels l
            JOIN originals o USING (poster_id)
            LEFT JOIN foreground_masks f
                ON f.poster_id = l.poster_id AND f.model_version = l.foreground_version
            ORDER BY l.curriculum_rank
            """
        )
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        layer_rows = conn.execute(
            f"""
            WITH labels AS ({labels_sql})
            SELECT m.poster_id, m.layer_index, m.role, m.bbox, m.title_box, m.labels_path
            FROM layer_masks m JOIN labels l
                ON m.poster_id = l.poster_id AND m.model_version = l.layers_version
            ORDER BY m.poster_id, m.layer_index
            """
        ).fetchall()
    layers: dict[str, list[tuple]] = {}
    for pid, *rest in layer_rows:
        layers.setdefault(pid, []).append(tuple(rest))
    items = []
    for r in rows:
        mine = layers.get(r["poster_id"], [])
        subject = next((_box(b) for _, role, b, _, _ in mine if role == "subject"), None)
        title = next((_box(tb) for _, role, _, tb, _ in mine if role == "title" and tb is not None), None)
        items.append(
            TrainItem(
                poster_id=r["poster_id"],
                home=blobs.home,
                original_path=r["original_path"],
                file_name=r["file_name"],
                width=int(r["width"]),
                height=int(r["height"]),
                foreground_path=r["mask_path"],
                foreground_bbox=_box(r["fg_bbox"]),
                labels_path=mine[0][4] if mine else None,
                layer_roles={int(i): role for i, role, *_ in mine},
                subject_bbox=subject,
                title_box=title,
                title_placement=r["title_placement"],
                layer_count=int(r["layer_count"]),
                has_text=bool(r["has_text"]),
                foreground_bucket=r["foreground_bucket"],
                primary_genre=r["primary_genre"],
                difficulty=float(r["difficulty"]),
                curriculum_rank=int(r["curriculum_rank"]),
                label_version=f"{r['layers_version']}|{r['foreground_version']}|{r['ocr_version']}",
                labels_source="marts.ssl_labels" if use_marts else "base_tables",
            )
        )
    return items


def data_version(items: Sequence[TrainItem]) -> str:
    """sha256 of the poster ids and label versions (and labels) a model was trained on."""
    digest = hashlib.sha256()
    for it in sorted(items, key=lambda i: i.poster_id):
        line = (
            f"{it.poster_id}\t{it.label_version}\t{it.title_placement}\t{it.layer_count}\t"
            f"{it.has_text}\t{it.difficulty:.4f}\n"
        )
        digest.update(line.encode())
    return digest.hexdigest()


# --- views ---------------------------------------------------------------------------------


def subject_view(item: TrainItem, rgb: np.ndarray, fg: np.ndarray | None) -> np.ndarray:
    """The subject crop: foreground box (else subject layer box) with the background blurred."""
    mask = fg if fg is not None else item.load_subject_layer()
    bbox = item.foreground_bbox or item.subject_bbox
    if mask is None:
        if bbox is None:
            return rgb
        mask = np.ones(rgb.shape[:2], np.float32)
    if bbox is not None:
        bbox = _scale_box(bbox, item, rgb)
    return foreground_crop(rgb, mask, bbox)


def title_view(item: TrainItem, rgb: np.ndarray) -> np.ndarray | None:
    if item.title_box is None:
        return None
    x0, y0, x1, y1 = _scale_box(item.title_box, item, rgb)
    h, w = rgb.shape[:2]
    px, py = round(_TITLE_PAD * (x1 - x0)), round(_TITLE_PAD * (y1 - y0) + 2)
    x0, y0, x1, y1 = max(0, x0 - px), max(0, y0 - py), min(w, x1 + px), min(h, y1 + py)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return rgb[y0:y1, x0:x1]


def _scale_box(box: Sequence[int], item: TrainItem, rgb: np.ndarray) -> tuple[int, int, int, int]:
    """A box in original poster pixels, in the (possibly downscaled) cached image."""
    sx, sy = rgb.shape[1] / item.width, rgb.shape[0] / item.height
    x0, y0, x1, y1 = box
    return (
        int(x0 * sx),
        int(y0 * sy),
        max(int(x0 * sx) + 1, round(x1 * sx)),
        max(int(y0 * sy) + 1, round(y1 * sy)),
    )


def to_input(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """RGB uint8 images -> NCHW float32, letterboxed to ``size`` and scaled to [-1, 1]: the one
    preprocessing used by training views, the exported embedder and evaluation."""
    batch = np.stack([letterbox(im, size) for im in images]).astype(np.float32)
    batch -= PIXEL_MEAN
    batch /= PIXEL_STD
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


@dataclass(frozen=True)
class Augment:
    """SimSiam-style augmentations at ``size`` px; ``scale`` is the crop's share of the area."""

    size: int = 112
    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.8
    strength: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness contrast sat hue
    gray: float = 0.2
    blur: float = 0.5

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = letterbox(_random_resized_crop(rgb, self.scale, self.ratio, rng), self.size)
        if rng.random() < self.flip:
            out = out[:, ::-1]
        if rng.random() < self.jitter:
            out = _colour_jitter(out, self.strength, rng)
        if rng.random() < self.gray:
            out = np.repeat(cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        if rng.random() < self.blur:
            sigma = rng.uniform(0.1, 2.0) * self.size / 224
            out = cv2.GaussianBlur(np.ascontiguousarray(out), (0, 0), sigmaX=sigma)
        return np.ascontiguousarray(out)


def _random_resized_crop(
    rgb: np.ndarray, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    h, w = rgb.shape[:2]
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))) * (w / h)
        cw, ch = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return rgb[y0 : y0 + ch, x0 : x0 + cw]
    return rgb


def _colour_jitter(
    rgb: np.ndarray, strength: tuple[float, float, float, float], rng: np.random.Generator
) -> np.ndarray:
    b, c, s, hue = strength
    x = rgb.astype(np.float32)
    ops = rng.permutation(4)
    for op in ops:
        if op == 0:
            x = x * rng.uniform(1 - b, 1 + b)
        elif op == 1:
            mean = x.mean()
            x = (x - mean) * rng.uniform(1 - c, 1 + c) + mean
        elif op == 2:
            grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
            x = (x - grey[..., None]) * rng.uniform(1 - s, 1 + s) + grey[..., None]
        else:
            hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.int16)
            hsv[..., 0] = (hsv[..., 0] + round(rng.uniform(-hue, hue) * 180)) % 180
            x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
        x = np.clip(x, 0, 255)
    return x.astype(np.uint8)


# --- dataset --------------------------------------------------------------------------------


@dataclass
class _Sources:
    whole: np.ndarray
    subject: np.ndarray
    title: np.ndarray | None


class PairDataset(torch.utils.data.Dataset):
    """SimSiam pairs (see the module docstring) with the auxiliary labels of each poster.

    ``pair(i, rng)`` draws one pair with the caller's generator (the trainer seeds one per
    step, so sampling is reproducible); ``__getitem__`` seeds from ``(seed, i)``. Decoded
    posters are cached downscaled to ``_CACHE_SCALE`` x ``size`` on their long side.
    """

    def __init__(self, items: Sequence[TrainItem], size: int = 112, seed: int = 0) -> None:
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
        views = to_input([a, b], self.size)
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
