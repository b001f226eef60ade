"""Depth and foreground estimators: the OpenVINO path on tiny ONNX models exported with torch
(same input/output names and shapes as MiDaS v2.1 small and U²-Netp), and the fallbacks."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from poster_assets.models import runtime
from poster_assets.models.depth import DepthEstimator
from poster_assets.models.foreground import ForegroundSegmenter
from poster_assets.models.hub import Models
from poster_assets.models.registry import IMAGENET_MEAN, IMAGENET_STD

# Exports tiny networks with torch and runs them on OpenVINO.
pytestmark = pytest.mark.slow

_C = 1.0 / 3.0


class _TinyMidas(torch.nn.Module):
    """1x3x256x256 -> 1x256x256: the channel mean of the normalised input (a fixed 1x1 conv),
    so the expected output can be computed by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(_C)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)[:, 0]


class _TinyU2netp(torch.nn.Module):
    """1x3x320x320 -> seven 1x1x320x320 sigmoid maps. d0 is the channel mean; the side outputs
    are its negation, so reading the wrong output inverts the mask."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = x.mean(dim=1, keepdim=True)
        return (torch.sigmoid(m),) + tuple(torch.sigmoid(-m * (k + 1)) for k in range(6))


# Estimators address tensors by position (the contract's output index), so names only mirror
# the published files where they are known (U²-Netp: input.1 -> 1959 = d0).
def _export(module: torch.nn.Module, size: int, path: Path, inputs: list[str], outputs: list[str]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns about itself
        torch.onnx.export(
            module.eval(),
            (torch.zeros(1, 3, size, size),),
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamo=False,
        )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rename_output(path: Path, old: str, new: str) -> str:
    """torch's exporter refuses numeric tensor names; the published U²-Netp calls d0 '1959'."""
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
    for out in model.graph.output:
        if out.name == old:
            out.name = new
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _register(models_dir: Path, entries: list[dict]) -> None:
    (models_dir / "manifest.json").write_text(json.dumps({"model": entries}))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    midas = _export(_TinyMidas(), 256, d / "midas-tiny.onnx", ["input"], ["output"])
    _export(_TinyU2netp(), 320, d / "u2netp-tiny.onnx", ["input.1"], [f"d{k}" for k in range(7)])
    u2 = _rename_output(d / "u2netp-tiny.onnx", "d0", "1959")
    _register(
        d,
        [
            {
                "name": "midas-small",
                "version": "tiny-test",
                "source": "file:midas-tiny.onnx",
                "sha256": midas,
            },
            {"name": "u2netp", "version": "tiny-test", "source": "file:u2netp-tiny.onnx", "sha256": u2},
        ],
    )
    return d


def _scene(h: int = 300, w: int = 200) -> np.ndarray:
    """Blue background, an orange square in the middle, a red gradient on the left: channels
    differ, so a wrong mean/std, channel order or scaling changes the expected maps."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:] = (30, 80, 160)
    rgb[:, : w // 4, 0] = np.linspace(0, 250, w // 4, dtype=np.uint8)[None, :]
    rgb[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = (240, 150, 40)
    return rgb


def _expected(rgb: np.ndarray, size: int, interp: int, scale_max: bool, back: int) -> np.ndarray:
    """The tiny networks' output computed by hand: resize, scale, ImageNet-normalise, channel
    mean, resize back, min-max."""
    x = cv2.resize(rgb, (size, size), interpolation=interp).astype(np.float32)
    x /= x.max() if scale_max else 255.0
    m = ((x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)).mean(axis=2)
    if scale_max:
        m = 1 / (1 + np.exp(-m))  # the tiny U²-Netp's sigmoid
    m = cv2.resize(m, (rgb.shape[1], rgb.shape[0]), interpolation=back)
    return (m - m.min()) / (m.max() - m.min())


# With f32 inference the maps match the hand computation closely; a wrong mean/std, channel
# order, scaling or output index is off by more than 2e-3 on this scene. The default (bf16 on
# CPUs that have it) agrees to about 1e-2.
_ATOL_F32 = 5e-4
_ATOL_DEFAULT = 1.5e-2


def test_depth_runs_the_network_with_midas_processing(tiny_models: Path) -> None:
    rgb = _scene()
    expected = _expected(rgb, 256, cv2.INTER_CUBIC, scale_max=False, back=cv2.INTER_CUBIC)
    for precision, atol in (("f32", _ATOL_F32), (None, _ATOL_DEFAULT)):
        est = DepthEstimator(tiny_models, precision=precision)
        assert est.neural and est.version.startswith("midas-small@tiny-test+"), est.reason
        # The version names the precision it computes in, and is named the same without compiling.
        assert est.version.endswith(f":{runtime.inference_precision(hint=precision)}")
        assert est.version == DepthEstimator.select(tiny_models, precision=precision).version
        depth = est.predict(rgb)
        assert depth.shape == rgb.shape[:2] and depth.dtype == np.float32
        assert depth.min() == 0.0 and depth.max() == pytest.approx(1.0)
        np.testing.assert_allclose(depth, expected, atol=atol)


def test_depth_batch_matches_single_images_of_any_size(tiny_models: Path) -> None:
    est = DepthEstimator(tiny_models)
    assert (
        Models(tiny_models).depth_version() == est.version == Models(tiny_models).data_version("midas-small")
    )
    images = [_scene(300, 200), _scene(120, 180), _scene(64, 64), _scene(300, 200)[::-1].copy()]
    batch = est.predict_batch(images)
    assert [d.shape for d in batch] == [i.shape[:2] for i in images]
    for img, d in zip(images, batch, strict=True):
        np.testing.assert_allclose(d, est.predict(img), atol=1e-6)  # same request path


def test_foreground_reads_d0_with_rembg_processing(tiny_models: Path) -> None:
    seg = ForegroundSegmenter(tiny_models, precision="f32")
    assert seg.neural and seg.version.startswith("u2netp@tiny-test+"), seg.reason
    rgb = _scene()
    fg = seg.predict_batch([rgb])[0]
    assert fg.shape == rgb.shape[:2] and fg.min() >= 0.0 and fg.max() <= 1.0
    expected = _expected(rgb, 320, cv2.INTER_LANCZOS4, scale_max=True, back=cv2.INTER_LINEAR)
    np.testing.assert_allclose(fg, expected, atol=_ATOL_F32)


def test_wrong_sha256_is_refused_and_falls_back(tmp_path: Path, tiny_models: Path) -> None:
    (tmp_path / "midas-tiny.onnx").write_bytes((tiny_models / "midas-tiny.onnx").read_bytes())
    _register(
        tmp_path,
        [
            {
                "name": "midas-small",
                "version": "tiny-test",
                "source": "file:midas-tiny.onnx",
                "sha256": "0" * 64,
            }
        ],
    )
    est = DepthEstimator(tmp_path)
    assert not est.neural and est.version == "depth:heuristic-v1"
    assert "sha256 mismatch" in est.reason
    rgb = _scene()
    depth = est.predict_batch([rgb], [[[20, 20, 120, 60]]])[0]
    assert depth.shape == rgb.shape[:2] and depth.dtype == np.float32
    assert depth.min() >= 0.0 and depth.max() <= 1.0


def test_contract_mismatch_is_refused(tmp_path: Path) -> None:
    sha = _export(_TinyMidas(), 128, tmp_path / "midas-128.onnx", ["input"], ["output"])
    _register(
        tmp_path,
        [{"name": "midas-small", "version": "wrong-size", "source": "file:midas-128.onnx", "sha256": sha}],
    )
    est = DepthEstimator(tmp_path)
    assert not est.neural and "differs from the contract" in est.reason


def test_missing_models_fall_back_to_the_classical_methods(tmp_path: Path) -> None:
    est, seg = DepthEstimator(tmp_path), ForegroundSegmenter(tmp_path)
    assert (est.version, seg.version) == ("depth:heuristic-v1", "fg:grabcut-saliency-v1")
    assert "models pull midas-small" in est.reason
    rgb = _scene()
    fg = seg.predict_batch([rgb, rgb[:150]])
    assert [f.shape for f in fg] == [(300, 200), (150, 200)]
    with pytest.raises(ValueError, match="text box lists"):
        seg.predict_batch([rgb], [])
