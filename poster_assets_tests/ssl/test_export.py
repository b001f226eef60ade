"""The exported OpenVINO IR computes what the PyTorch encoder computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from poster_assets.models.efficientnet_lite import preprocess
from poster_assets.models.ssl_encoder import IR_NAME, SslEmbedder, encoder_version
from poster_assets.ssl.export import export_openvino
from poster_assets.ssl.labels import TrainItem
from poster_assets.ssl.model import NormalisedEncoder
from poster_assets.ssl.train import TrainResult, load_checkpoint
from poster_assets.storage.files import file_sha256


@pytest.fixture(scope="module")
def ir(short_run: TrainResult, run_dir: Path) -> Path:
    return export_openvino(short_run.checkpoint_path, run_dir / "ir")


@pytest.mark.slow
def test_export_is_named_by_the_checkpoint_and_reused(
    short_run: TrainResult, ir: Path, run_dir: Path
) -> None:
    sha = file_sha256(short_run.checkpoint_path)
    assert ir.name == IR_NAME and ir.parent.name == f"ssl_encoder_{sha[:12]}"
    assert ir.with_suffix(".bin").stat().st_size > 1_000_000  # fp32 weights of the whole trunk
    assert export_openvino(short_run.checkpoint_path, run_dir / "ir") == ir
    assert [p for p in (run_dir / "ir").iterdir() if p.name.startswith(".tmp")] == []


@pytest.mark.slow
def test_ir_matches_torch_within_1e3(
    short_run: TrainResult, ir: Path, ssl_items: list[TrainItem], tmp_path: Path
) -> None:
    embedder = SslEmbedder(ir, batch_size=3, cache_dir=str(tmp_path / "ov_cache"))
    sha = file_sha256(short_run.checkpoint_path)
    assert embedder.version == encoder_version(sha) == f"ssl-encoder@{sha[:12]}"
    assert embedder.checkpoint_sha256 == sha
    assert embedder.image_size == short_run.config.image_size
    assert embedder.data_version == short_run.data_version
    images = [it.load_rgb() for it in ssl_items[:5]]
    got = embedder.embed(images)
    assert got.shape == (5, 128) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    model, config, _ = load_checkpoint(short_run.checkpoint_path)
    with torch.no_grad():
        pixels = torch.from_numpy(preprocess(images, config.image_size))
        want = NormalisedEncoder(model.encoder).eval()(pixels)
    assert np.abs(got - want.numpy()).max() < 1e-3
    # Different posters, different vectors.
    assert (got @ got.T)[~np.eye(5, dtype=bool)].max() < 0.9999
    assert embedder.embed([]).shape == (0, 128)


def test_embedder_refuses_a_foreign_ir(tmp_path: Path) -> None:
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 3], name="x")
    y = ops.relu(x)
    model = ov.Model([y], [x], "plain")
    path = tmp_path / "plain.xml"
    ov.save_model(model, path)
    with pytest.raises(ValueError, match="poster_assets.ssl.export"):
        SslEmbedder(path)
