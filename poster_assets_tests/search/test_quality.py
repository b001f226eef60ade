"""Retrieval-quality measures on constructed vectors and real images."""

from __future__ import annotations

import numpy as np
import pytest

from poster_assets.embed.kinds import raw_pixel_embedding
from poster_assets.search.quality import (
    VARIANTS,
    cropped_variant,
    genre_chance_level,
    genre_precision_at_k,
    jpeg_variant,
    near_duplicate_recall,
    primary_genre,
    resized_variant,
)
from poster_assets_tests.images import sample_images


def _genre_vectors(separation: float, seed: int = 0) -> tuple[np.ndarray, list[list[str]]]:
    rng = np.random.default_rng(seed)
    names = ["horror", "comedy", "drama", "action"]
    centres = rng.standard_normal((4, 32))
    labels = rng.integers(4, size=200)
    x = separation * centres[labels] + rng.standard_normal((200, 32))
    return x.astype(np.float32), [[names[g], "thriller"] if g == 0 else [names[g]] for g in labels]


def test_genre_precision_rewards_genre_structure():
    clustered, genres = _genre_vectors(separation=3.0)
    random, _ = _genre_vectors(separation=0.0)
    chance = genre_chance_level(genres)
    assert 0.15 < chance < 0.35
    assert genre_precision_at_k(clustered, genres, k=10) > 0.95
    assert abs(genre_precision_at_k(random, genres, k=10) - chance) < 0.1


def test_genre_precision_leaves_the_query_out():
    x = np.eye(4, dtype=np.float32)
    x = np.concatenate([x, x])  # each vector has an exact twin
    genres = [["a"], ["b"], ["c"], ["d"], ["a"], ["b"], ["c"], ["d"]]
    assert genre_precision_at_k(x, genres, k=1) == 1.0
    assert primary_genre({"b", "a"}) == "a" and primary_genre(["b", "a"]) == "b" and primary_genre([]) is None
    with pytest.raises(ValueError):
        genre_precision_at_k(x, genres[:3])


def test_variants_alter_the_image_but_keep_its_content():
    img = sample_images()[1]
    assert resized_variant(img).shape == (150, 226, 3)
    assert cropped_variant(img, 0.05).shape == (270, 407, 3)
    jpeg = jpeg_variant(img, quality=30)
    assert jpeg.shape == img.shape and not np.array_equal(jpeg, img)
    assert np.abs(jpeg.astype(int) - img).mean() < 10
    assert set(VARIANTS) == {"resized", "jpeg", "cropped"}


def test_near_duplicate_recall_with_the_pixel_baseline():
    images = sample_images()

    def embed(batch: list[np.ndarray]) -> np.ndarray:
        return np.stack([raw_pixel_embedding(im) for im in batch])

    recall = near_duplicate_recall(embed, images)
    assert recall["jpeg"] == 1.0 and recall["resized"] == 1.0
    assert 0.0 <= recall["cropped"] <= 1.0 and recall["all"] >= 2 / 3

    def constant(batch: list[np.ndarray]) -> np.ndarray:  # an embedding that cannot tell images apart
        return np.ones((len(batch), 8), np.float32)

    assert near_duplicate_recall(constant, images)["all"] <= 1 / len(images) + 1e-9


@pytest.mark.slow
def test_crop_tolerant_whole_image_similarity_tells_copies_from_other_pictures() -> None:
    """The near-duplicate signal of search (``search.duplicates``): a resized, recompressed or
    trimmed copy scores at least NEAR_DUPLICATE_MIN with its original's 256-px thumbnail,
    a different photograph below it."""
    from PIL import Image

    from poster_assets.search.duplicates import NEAR_DUPLICATE_MIN, crop_tolerant_similarity, crop_vectors

    images = sample_images()
    thumbs = []
    for im in images:
        thumb = Image.fromarray(im)
        thumb.thumbnail((256, 256))
        thumbs.append(np.asarray(thumb))
    # The summed-area crops agree with the pixels kind's own embedding of the same crop.
    t = thumbs[0]
    h, w = t.shape[:2]
    boxes = np.array([[0, 0, w, h], [10, 6, w - 8, h - 12]])
    vectors = crop_vectors(t, boxes)
    assert vectors[0] @ raw_pixel_embedding(t) > 0.999
    assert vectors[1] @ raw_pixel_embedding(np.ascontiguousarray(t[6 : h - 12, 10 : w - 8])) > 0.999

    for variant in (
        lambda im: jpeg_variant(resized_variant(im, 0.8), 60),
        lambda im: jpeg_variant(cropped_variant(im, 0.05), 70),
        lambda im: np.ascontiguousarray(im[: int(im.shape[0] * 0.93)]),  # the bottom 7 % cut off
    ):
        for i, im in enumerate(images):
            copy = variant(im)
            vector, aspect = raw_pixel_embedding(copy), copy.shape[1] / copy.shape[0]
            scores = np.array([crop_tolerant_similarity(vector, aspect, t) for t in thumbs])
            assert scores[i] >= NEAR_DUPLICATE_MIN, (i, scores[i])
            assert np.delete(scores, i).max() < NEAR_DUPLICATE_MIN, i
