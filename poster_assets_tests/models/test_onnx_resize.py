"""Rewriting constant-size ``Resize`` nodes to scale factors: the graph then follows its input
size, and at the exported size it computes the same values."""

from __future__ import annotations

import io

import numpy as np
import onnx
import openvino as ov
import pytest

from poster_assets.models.onnx_resize import ResizeRewriteError, constant_resizes_to_scales, read_resized
from poster_assets_tests.models.tiny_onnx import tiny_isnet, tiny_isnet_expected, two_resizes


def _ov(model: onnx.ModelProto, shape: list[int] | None = None) -> ov.CompiledModel:
    core = ov.Core()
    net = core.read_model(io.BytesIO(model.SerializeToString()))
    if shape is not None:
        net.reshape({0: shape})
    return core.compile_model(net, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def _run(compiled: ov.CompiledModel, x: np.ndarray) -> np.ndarray:
    return compiled.create_infer_request().infer({0: x})[compiled.output(0)]


def test_rewritten_resizes_follow_the_input_and_match_at_the_exported_size() -> None:
    original = two_resizes(8)
    rewritten, count = constant_resizes_to_scales(original)
    assert count == 2
    onnx.checker.check_model(rewritten)
    resizes = [n for n in rewritten.graph.node if n.op_type == "Resize"]
    assert all(len(n.input) == 3 and n.input[2].endswith("/scales") for n in resizes)
    assert "bigger" not in {i.name for i in rewritten.graph.initializer}  # the old sizes are gone
    scales = {
        i.name: onnx.numpy_helper.to_array(i).tolist()
        for i in rewritten.graph.initializer
        if i.name.endswith("/scales")
    }
    assert sorted(scales.values()) == [[1.0, 1.0, 1.5, 1.5], [1.0, 1.0, 2.0, 2.0]]

    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_run(_ov(rewritten), x), _run(_ov(original), x))

    # As shipped the graph cannot take another size: its second Resize always makes 12x12.
    with pytest.raises(RuntimeError):
        _run(_ov(original, [1, 1, 16, 16]), np.zeros((1, 1, 16, 16), np.float32))
    for side in (16, 32):
        out = _run(_ov(rewritten, [1, 1, side, side]), np.ones((1, 1, side, side), np.float32))
        assert out.shape == (1, 1, side * 3 // 2, side * 3 // 2)
        np.testing.assert_allclose(out, 2.0)  # pooled 1 upsampled + 1, at every size


def test_read_resized_runs_the_network_at_the_asked_size(tmp_path) -> None:
    path = tmp_path / "tiny-isnet.onnx"
    onnx.save(tiny_isnet(64), str(path))
    model = read_resized(path, (32, 48), cache_dir=str(tmp_path / "cache"))
    assert model.input(0).get_partial_shape().to_shape() == ov.Shape([1, 3, 32, 48])
    assert model.output(0).get_partial_shape().to_shape() == ov.Shape([1, 1, 32, 48])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = np.random.default_rng(1).random((1, 3, 32, 48), dtype=np.float32) - 0.5
    np.testing.assert_allclose(_run(compiled, x)[0, 0], tiny_isnet_expected(x), atol=1e-6)
    assert onnx.load(str(path)).graph.node[2].input[3] == "sizes"  # the file is untouched


def test_a_resize_whose_input_shape_is_unknown_is_refused() -> None:
    model = two_resizes(8)
    dim = model.graph.input[0].type.tensor_type.shape.dim[2]
    dim.Clear()
    dim.dim_param = "height"
    with pytest.raises(ResizeRewriteError, match="no static shape"):
        constant_resizes_to_scales(model)
