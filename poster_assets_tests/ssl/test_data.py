"""Training items from a real extracted store, and the pairs built from them."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from poster_assets.ssl.data import (
    _LABELS_FROM_BASE_SQL,
    LAYER_BUCKETS,
    PAIR_KINDS,
    PAIR_WEIGHTS,
    PLACEMENTS,
    Augment,
    PairDataset,
    TrainItem,
    data_version,
    load_training_items,
    subject_view,
    title_view,
)
from poster_assets.storage.resource import PosterStore


def test_items_come_from_the_base_tables_without_dbt(ssl_items: list[TrainItem]) -> None:
    assert len(ssl_items) == 8
    assert {i.labels_source for i in ssl_items} == {"base_tables"}
    assert [i.curriculum_rank for i in ssl_items] == list(range(1, 9))
    assert [i.difficulty for i in ssl_items] == sorted(i.difficulty for i in ssl_items)
    for it in ssl_items:
        assert 0.0 <= it.difficulty <= 1.0
        assert it.title_placement in PLACEMENTS
        assert 0 <= it.layer_bucket < len(LAYER_BUCKETS)
        assert it.layer_count == len(it.layer_roles) >= 2
        assert "subject" in it.layer_roles.values()
        assert (it.home / it.original_path).is_file()
        assert it.foreground_path and (it.home / it.foreground_path).is_file()
        assert it.labels_path and (it.home / it.labels_path).is_file()
        assert it.label_version.count("|") == 2 and it.label_version.startswith("layers:")
    # The generator draws a title on every poster; OCR finds most of them.
    assert sum(i.has_text for i in ssl_items) >= 7
    assert sum(i.title_box is not None for i in ssl_items) >= 6
    assert {i.primary_genre for i in ssl_items} - {"unknown"}


def test_marts_ssl_labels_are_used_when_built(ssl_store: PosterStore, tmp_path) -> None:
    # A copy of the store whose marts.ssl_labels says something the base tables do not.
    copy = PosterStore(home=str(tmp_path / "home"))
    copy.home_path.mkdir()
    shutil.copy(ssl_store.db_path, copy.db_path)
    with copy.db.transaction() as conn:
        conn.execute("CREATE SCHEMA marts")
        conn.execute(f"CREATE TABLE marts.ssl_labels AS {_LABELS_FROM_BASE_SQL}")
        conn.execute("UPDATE marts.ssl_labels SET primary_genre = 'from-marts'")
    items = load_training_items(copy.db, ssl_store.blobs)
    assert {i.labels_source for i in items} == {"marts.ssl_labels"}
    assert {i.primary_genre for i in items} == {"from-marts"}
    base = load_training_items(copy.db, ssl_store.blobs, source="base")
    assert "from-marts" not in {i.primary_genre for i in base}
    with pytest.raises(ValueError, match="source"):
        load_training_items(copy.db, ssl_store.blobs, source="elsewhere")


def test_data_version_follows_ids_and_labels(ssl_items: list[TrainItem]) -> None:
    v = data_version(ssl_items)
    assert v == data_version(list(reversed(ssl_items)))
    assert v != data_version(ssl_items[:-1])
    relabelled = [dataclasses.replace(ssl_items[0], label_version="layers:other|x|y"), *ssl_items[1:]]
    assert v != data_version(relabelled)


def test_subject_and_title_views_crop_the_structure(ssl_items: list[TrainItem]) -> None:
    it = next(i for i in ssl_items if i.title_box is not None)
    rgb = it.load_rgb()
    subject = subject_view(it, rgb, it.load_foreground())
    x0, y0, x1, y1 = it.foreground_bbox
    # The foreground box grown by 10 % a side, clipped to the poster.
    assert abs(subject.shape[1] - min(it.width, (x1 - x0) * 1.2)) <= 0.2 * (x1 - x0) + 2
    assert subject.shape[0] <= it.height and subject.shape[0] >= (y1 - y0)
    title = title_view(it, rgb)
    tx0, ty0, tx1, ty1 = it.title_box
    assert title is not None and title.shape[1] >= tx1 - tx0 and title.shape[0] >= ty1 - ty0
    assert title.shape[0] < rgb.shape[0] / 2


def test_augment_is_seeded_and_keeps_the_input_contract() -> None:
    rng_img = np.random.default_rng(0)
    rgb = rng_img.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    aug = Augment(size=64)
    a = aug(rgb, np.random.default_rng(5))
    b = aug(rgb, np.random.default_rng(5))
    c = aug(rgb, np.random.default_rng(6))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pairs_have_the_documented_kinds_weights_and_labels(ssl_items: list[TrainItem]) -> None:
    ds = PairDataset(ssl_items, size=64, seed=3)
    rng = np.random.default_rng(0)
    kinds = set()
    for step in range(30):
        i = step % len(ds)
        p = ds.pair(i, rng)
        kind = PAIR_KINDS[int(p["kind"])]
        kinds.add(kind)
        assert p["view1"].shape == p["view2"].shape == (3, 64, 64)
        assert float(p["view1"].min()) >= -1.0 and float(p["view1"].max()) <= 1.0
        assert float(p["weight"]) == PAIR_WEIGHTS[kind]
        assert float(p["aux_mask"]) == (1.0 if kind == "poster" else 0.0)
        assert int(p["placement"]) == ssl_items[i].placement_index
        assert int(p["layers"]) == ssl_items[i].layer_bucket
        if ssl_items[i].title_box is None:
            assert kind != "title_subject"
    assert kinds == set(PAIR_KINDS)
    # __getitem__ is a pure function of (seed, index).
    assert all((ds[2][k] == PairDataset(ssl_items, size=64, seed=3)[2][k]).all() for k in ("view1", "view2"))
