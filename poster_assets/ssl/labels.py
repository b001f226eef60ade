"""Training items: every poster the dbt model ``marts.ssl_labels`` labels, with what training
reads for it (paths, boxes, layer roles), read from the store once.

The labels come from ``marts.ssl_labels`` only (the formula lives in dbt, documented in
``_marts.yml``); a store whose dbt models were never built raises ``LabelsNotBuiltError``.
The items are plain values: the dataset then reads blob files only, never the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poster_assets.extract.runner import PosterRef, load_rgb
from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.codecs import decode_labels, decode_mask
from poster_assets.storage.store import Store

LABELS_TABLE = "marts.ssl_labels"
PLACEMENTS = ("top", "middle", "bottom", "none")
LAYER_BUCKETS = ("2", "3", "4", "5+")

_LABEL_COLUMNS = (
    "poster_id, title_placement, layer_count, has_text, foreground_bucket, primary_genre, difficulty, "
    "curriculum_rank, layers_version, foreground_version, ocr_version"
)


class LabelsNotBuiltError(RuntimeError):
    """The store has no ``marts.ssl_labels``: the dbt models were never built on it."""


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

    @property
    def placement_index(self) -> int:
        return PLACEMENTS.index(self.title_placement) if self.title_placement in PLACEMENTS else 3

    @property
    def layer_bucket(self) -> int:
        return int(np.clip(self.layer_count, 2, 5)) - 2

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(self.home)

    def load_rgb(self) -> np.ndarray:
        return load_rgb(self.blobs, PosterRef(self.poster_id, self.original_path, self.file_name))

    def load_foreground(self) -> np.ndarray | None:
        """Foreground probability (float32 in [0, 1]) at the mask's own resolution."""
        if self.foreground_path is None:
            return None
        return decode_mask(self.blobs.abspath(self.foreground_path))

    def load_subject_layer(self) -> np.ndarray | None:
        """1.0 on the subject layer's pixels, from the layer label PNG."""
        subject = [i for i, role in self.layer_roles.items() if role == "subject"]
        if self.labels_path is None or not subject:
            return None
        labels = decode_labels(self.blobs.abspath(self.labels_path))
        return np.isin(labels, subject).astype(np.float32)


def _has_ssl_labels(conn) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'marts' AND table_name = 'ssl_labels'"
        ).fetchone()[0]
    )


def _box(value) -> tuple[int, int, int, int] | None:
    return None if value is None else tuple(int(v) for v in value)  # type: ignore[return-value]


def load_training_items(store: Store) -> list[TrainItem]:
    """Every poster of ``marts.ssl_labels``, in curriculum order (easiest first).

    Raises ``LabelsNotBuiltError`` when the dbt models have not been built on this store.
    """
    labels_sql = f"SELECT {_LABEL_COLUMNS} FROM {LABELS_TABLE}"
    with store.db.connect(read_only=True) as conn:
        if not _has_ssl_labels(conn):
            raise LabelsNotBuiltError(
                f"{store.db_path} has no {LABELS_TABLE}: the SSL labels come from the dbt models; "
                "materialize them first (`poster-assets run`, or corpus_job in the Dagster UI)"
            )
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
                home=store.blobs.home,
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
