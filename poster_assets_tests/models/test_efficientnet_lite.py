"""EfficientNet-Lite0 on OpenVINO: real weights, real conversion (cached once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poster_assets.models.efficientnet_lite import (
    FEATURE_DIM,
    EfficientNetLite0Embedder,
    ensure_ir,
    letterbox,
    preprocess,
)
from poster_assets.search.quality import near_duplicate_recall
from poster_assets_tests.images import sample_images

# Converts and runs the real EfficientNet-Lite0.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home") / "models"


@pytest.fixture(scope="session")
def embedder(models_dir: Path) -> EfficientNetLite0Embedder:
    return EfficientNetLite0Embedder(models_dir)


@pytest.fixture(scope="session")
def images() -> list[np.ndarray]:
    return sample_images()


def test_embeddings_are_unit_vectors_and_deterministic(embedder, images):
    first = embedder.embed(images[:5])
    again = embedder.embed([images[2], images[0]])
    assert first.shape == (5, FEATURE_DIM) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(again, first[[2, 0]], atol=1e-6)
    assert embedder.version.startswith("efficientnet-lite0@imagenet+")
    assert embedder.embed([]).shape == (0, FEATURE_DIM)


def test_batches_larger_than_one_request_keep_their_order(embedder, images):
    many = images * 2  # 34 images: three batches of 16, answered out of order
    vectors = embedder.embed(many)
    np.testing.assert_allclose(vectors[: len(images)], vectors[len(images) :], atol=1e-6)
    singles = np.concatenate([embedder.embed([im]) for im in images[:3]])
    np.testing.assert_allclose(vectors[:3], singles, atol=1e-5)


def test_features_match_the_torch_network(embedder, images):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from poster_assets.models.registry import get_spec
    from poster_assets.models.weights import resolve_path

    weights = resolve_path(get_spec("efficientnet-lite0"))
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights)).eval()
    with torch.no_grad():
        feats = net.extract_features(torch.from_numpy(preprocess(images[:2]))).mean(dim=(2, 3)).numpy()
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed(images[:2]), feats, atol=1e-4)


def test_imagenet_features_tell_photographs_apart(embedder, images):
    vectors = embedder.embed(images)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    assert sims.max() < 0.95  # distinct photographs are not near-duplicates


def test_altered_copies_find_their_original_first(embedder, images):
    recall = near_duplicate_recall(embedder.embed, images)
    assert recall["jpeg"] == 1.0 and recall["resized"] == 1.0
    assert recall["cropped"] >= 0.9


def test_ir_is_converted_once_and_reused(embedder, models_dir):
    xml = ensure_ir(models_dir)
    stamp = xml.stat().st_mtime_ns
    assert ensure_ir(models_dir) == xml and xml.stat().st_mtime_ns == stamp
    assert xml.parent.name == "579344248a93" and xml.with_suffix(".bin").stat().st_size > 10_000_000


def test_letterbox_keeps_aspect_with_grey_bars():
    tall = np.zeros((400, 200, 3), np.uint8)
    out = letterbox(tall)
    assert out.shape == (224, 224, 3)
    assert (out[:, :50] == 127).all() and (out[:, 62:162] == 0).all()
    with pytest.raises(ValueError):
        letterbox(np.zeros((10, 10), np.uint8))
