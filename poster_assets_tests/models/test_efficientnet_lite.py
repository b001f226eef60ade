"""EfficientNet-Lite0 on OpenVINO: real weights, real conversion (cached once per session)."""

from __future__ import annotations

import logging
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from poster_assets.cli import main
from poster_assets.models import artifacts
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
    # The sha256 of what was written is recorded with it, and matches.
    assert (xml.parent / artifacts.RECORD).is_file() and artifacts.problem(xml.parent, rehash=True) is None


def _private_models(models_dir: Path, home: Path) -> Path:
    """A home whose models folder holds a copy of the converted IR (and its own compile cache)."""
    models = home / "models"
    models.mkdir(parents=True)
    shutil.copytree(models_dir / "efficientnet_lite0", models / "efficientnet_lite0")
    return models


def _scale_conv_weights(xml: Path, factor: float = 1.5, keep_mtime: bool = True) -> None:
    """Scale every f32 convolution kernel (4-d constant) in ``model.bin`` in place: same size,
    and with ``keep_mtime`` the same modification time, so only the bytes tell."""
    binary = xml.with_suffix(".bin")
    st = binary.stat()
    weights = np.fromfile(binary, np.uint8)
    for layer in ET.parse(xml).getroot().iter("layer"):
        data = layer.find("data")
        if layer.get("type") != "Const" or data is None or data.get("element_type") != "f32":
            continue
        if len(data.get("shape", "").split(",")) != 4:
            continue
        start, size = int(data.get("offset")), int(data.get("size"))
        kernel = weights[start : start + size].view(np.float32)
        kernel *= np.float32(factor)
    weights.tofile(binary)
    assert binary.stat().st_size == st.st_size
    if keep_mtime:
        os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns))


def _verify(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POSTER_ASSETS_HOME", str(home))
    return CliRunner().invoke(main, ["models", "verify"])


def test_a_converted_model_whose_weights_changed_is_refused_and_converted_again(
    embedder, models_dir, images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
):
    models = _private_models(models_dir, tmp_path / "home")
    reference = embedder.embed(images[:4])
    np.testing.assert_allclose(EfficientNetLite0Embedder(models).embed(images[:4]), reference, atol=1e-5)
    xml = ensure_ir(models)
    _scale_conv_weights(xml)

    out = _verify(tmp_path / "home", monkeypatch)
    assert out.exit_code == 1, out.output
    assert "efficientnet_lite0/579344248a93" in out.output and "model.bin has sha256" in out.output

    # Used again (a new process, or a new runner after a model change): the changed IR is never
    # run, the weights are converted again, and the vectors are the verified network's.
    with caplog.at_level(logging.WARNING, logger="poster_assets.models.efficientnet_lite"):
        again = EfficientNetLite0Embedder(models).embed(images[:4])
    np.testing.assert_allclose(again, reference, atol=1e-5)
    assert "model.bin" in caplog.text and "converted" in caplog.text.lower()
    assert artifacts.problem(xml.parent, rehash=True) is None
    assert _verify(tmp_path / "home", monkeypatch).exit_code == 0
    assert not [p for p in xml.parent.parent.iterdir() if p.name.startswith(".tmp")]


def test_the_compile_cache_never_answers_for_other_bytes(embedder, models_dir, images, tmp_path: Path):
    # OpenVINO keys a model compiled from a *path* by the path: a blob cached for the old bytes
    # would keep answering after the file changed. Here the new bytes are even recorded (as a
    # re-conversion would), so only the compile cache could serve the old network.
    models = _private_models(models_dir, tmp_path / "home")
    before = EfficientNetLite0Embedder(models).embed(images[:4])  # fills models/ov_cache
    xml = ensure_ir(models)
    _scale_conv_weights(xml, keep_mtime=False)
    artifacts.record_hashes(xml.parent)
    after = EfficientNetLite0Embedder(models).embed(images[:4])

    fresh_models = _private_models(models, tmp_path / "fresh")  # the same new bytes, no cache
    fresh = EfficientNetLite0Embedder(fresh_models).embed(images[:4])
    np.testing.assert_allclose(after, fresh, atol=1e-5)
    assert np.abs(after - before).max() > 1e-2


def test_letterbox_keeps_aspect_with_grey_bars():
    tall = np.zeros((400, 200, 3), np.uint8)
    out = letterbox(tall)
    assert out.shape == (224, 224, 3)
    assert (out[:, :50] == 127).all() and (out[:, 62:162] == 0).all()
    with pytest.raises(ValueError):
        letterbox(np.zeros((10, 10), np.uint8))
