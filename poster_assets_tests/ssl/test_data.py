"""Training items from a real extracted store (labels from marts.ssl_labels), and the pairs
built from them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from poster_assets.defs.resources import PosterStore
from poster_assets.models.efficientnet_lite import letterbox, preprocess
from poster_assets.ssl.augment import Augment, subject_view, title_view
from poster_assets.ssl.dataset import PAIR_KINDS, PAIR_WEIGHTS, PairDataset
from poster_assets.ssl.labels import (
    LAYER_BUCKETS,
    PLACEMENTS,
    LabelsNotBuiltError,
    TrainItem,
    data_version,
    load_training_items,
)
from poster_assets.storage.store import Store


@pytest.mark.slow
def test_items_come_from_marts_ssl_labels_in_curriculum_order(
    ssl_store: PosterStore, ssl_items: list[TrainItem]
) -> None:
    assert len(ssl_items) == 8
    assert [i.curriculum_rank for i in ssl_items] == list(range(1, 9))
    assert [i.difficulty for i in ssl_items] == sorted(i.difficulty for i in ssl_items)
    marts = ssl_store.db.query(
        "SELECT poster_id, title_placement, layer_count, has_text, primary_genre, difficulty "
        "FROM marts.ssl_labels ORDER BY curriculum_rank"
    )
    assert [
        (i.poster_id, i.title_placement, i.layer_count, i.has_text, i.primary_genre, i.difficulty)
        for i in ssl_items
    ] == [(pid, tp, lc, ht, g, pytest.approx(d)) for pid, tp, lc, ht, g, d in marts]
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
        fg = it.load_foreground()
        assert fg is not None and fg.dtype == np.float32 and 0.0 <= fg.min() <= fg.max() <= 1.0
        subject = it.load_subject_layer()
        assert subject is not None and set(np.unique(subject)) <= {0.0, 1.0} and subject.max() == 1.0
    # The generator draws a title on every poster; OCR finds most of them.
    assert sum(i.has_text for i in ssl_items) >= 7
    assert sum(i.title_box is not None for i in ssl_items) >= 6
    assert {i.primary_genre for i in ssl_items} - {"unknown"}


def test_a_store_without_the_dbt_models_has_no_labels(tmp_path) -> None:
    store = Store.at(tmp_path / "home")
    store.home_path.mkdir()
    store.db.ensure_schema()  # the base tables, but no dbt build
    with pytest.raises(LabelsNotBuiltError, match=r"marts\.ssl_labels.*poster-assets run.*corpus_job"):
        load_training_items(store)
    assert issubclass(LabelsNotBuiltError, RuntimeError)


@pytest.mark.slow
def test_data_version_follows_ids_and_labels(ssl_items: list[TrainItem]) -> None:
    v = data_version(ssl_items)
    assert v == data_version(list(reversed(ssl_items)))
    assert v != data_version(ssl_items[:-1])
    relabelled = [dataclasses.replace(ssl_items[0], label_version="layers:other|x|y"), *ssl_items[1:]]
    assert v != data_version(relabelled)


@pytest.mark.slow
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


def test_views_become_input_as_the_embedder_preprocesses() -> None:
    # Training views and the exported IR share one preprocessing: letterbox, (x - 127) / 128, NCHW.
    rgb = np.random.default_rng(1).integers(0, 256, (90, 60, 3), dtype=np.uint8)
    want = (letterbox(rgb, 48).astype(np.float32) - 127.0) / 128.0
    got = preprocess([rgb], 48)
    assert got.shape == (1, 3, 48, 48) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0], want.transpose(2, 0, 1))


@pytest.mark.slow
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
