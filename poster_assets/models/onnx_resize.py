"""Make an ONNX network that resizes to constant sizes run at other input sizes.

Exporters often freeze PyTorch's ``F.interpolate(x, size=other.shape[2:])`` into a ``Resize``
whose ``sizes`` are constant (an initializer, or ``Concat(Shape(x)[:2], constant)``): the graph
then only runs at the size it was exported at (IS-Net has 39 of them).
``constant_resizes_to_scales`` replaces each such ``sizes`` with the equivalent ``scales``
(output / input shape of that node, from ONNX shape inference at the exported size), so after
``ov.Model.reshape`` every resize follows its input. At the exported
size the rewritten graph computes the same values: a ``Resize`` given ``scales`` maps output to
input coordinates with exactly the ratio that ``sizes`` implied.

The spatial sizes must keep every skip connection aligned (for U-Net-like networks: a multiple
of the total downsampling, e.g. 32 or 64); OpenVINO refuses a reshape that does not.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
from onnx import numpy_helper, shape_inference

from poster_assets.models import runtime


class ResizeRewriteError(ValueError):
    """A constant-size ``Resize`` whose input shape shape inference could not tell."""


def constant_resizes_to_scales(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` in which every ``Resize`` with a constant ``sizes`` input uses the
    equivalent ``scales`` instead, with the spatial axes (2 and up) of the graph input and
    outputs made symbolic; and how many nodes were rewritten."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    producers = {name: node for node in graph.node for name in node.output}
    shapes = _static_shapes(model)
    replaced: set[str] = set()
    rewritten = 0
    for index, node in enumerate(graph.node):
        if node.op_type != "Resize" or len(node.input) < 4 or not node.input[3]:
            continue
        spatial = _constant_spatial_sizes(node.input[3], constants, producers)
        if spatial is None:
            continue  # sizes computed from other tensors' shapes already follow the input
        in_shape, out_shape = shapes.get(node.input[0]), shapes.get(node.output[0])
        if in_shape is None or out_shape is None or len(in_shape) != len(out_shape):
            raise ResizeRewriteError(
                f"Resize {node.name or index}: shape inference gives no static shape for {node.input[0]!r}"
            )
        sizes = np.asarray(out_shape, np.int64)
        if list(sizes[len(sizes) - len(spatial) :]) != list(spatial):
            raise ResizeRewriteError(f"Resize {node.name or index}: sizes {spatial} but output {out_shape}")
        name = f"{node.name or f'resize_{index}'}/scales"
        graph.initializer.append(numpy_helper.from_array(_scales(sizes, in_shape), name))
        roi = node.input[1] if len(node.input) > 1 else ""
        replaced.add(node.input[3])
        node.input[:] = [node.input[0], roi, name]
        rewritten += 1
    _drop_unused(graph, replaced)
    # Declared shapes were those of the exported size: spatial axes become symbolic.
    del graph.value_info[:]
    for value in [graph.input[0], *graph.output]:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim[2:], start=2):
            dim.Clear()
            dim.dim_param = f"{value.name}_{axis}"
    return out, rewritten


def read_resized(path: Path | str, size: tuple[int, int], cache_dir: str | None = None) -> ov.Model:
    """The ONNX network at ``path`` as an OpenVINO model reshaped to 1x3x``size``, its
    constant-size ``Resize`` nodes rewritten to scales first (in memory; the file is untouched)."""
    rewritten, _ = constant_resizes_to_scales(onnx.load(str(path)))
    model = runtime.core(cache_dir).read_model(io.BytesIO(rewritten.SerializeToString()))
    shape = [dim.get_length() if dim.is_static else 1 for dim in model.input(0).get_partial_shape()]
    model.reshape({model.input(0).get_any_name(): [*shape[:2], *size]})
    return model


def _constant_spatial_sizes(
    name: str, constants: dict[str, onnx.TensorProto], producers: dict[str, onnx.NodeProto]
) -> list[int] | None:
    """The constant trailing values of a ``Resize``'s ``sizes``: all of them for a constant, the
    last input of ``Concat(Shape(x)[:2], constant)`` (how PyTorch exports ``size=(h, w)``), or
    None when they are computed."""
    if name in constants:
        return numpy_helper.to_array(constants[name]).astype(np.int64).tolist()
    node = producers.get(name)
    if node is not None and node.op_type == "Concat" and node.input and node.input[-1] in constants:
        return numpy_helper.to_array(constants[node.input[-1]]).astype(np.int64).tolist()
    return None


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    # data_prop: sizes computed as Concat(Shape slice, constant) become known shapes downstream.
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    shapes: dict[str, list[int]] = {}
    for info in [*g.input, *g.value_info, *g.output]:
        tensor = info.type.tensor_type
        if not tensor.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        if dims and all(d > 0 for d in dims):
            shapes[info.name] = dims
    return shapes


def _scales(sizes: np.ndarray, in_shape: list[int]) -> np.ndarray:
    """float32 ``sizes / in_shape``, nudged up where float32 rounding would make
    ``floor(in * scale)`` (ONNX's output size) one short of ``sizes``."""
    scales = (sizes / np.asarray(in_shape, np.float64)).astype(np.float32)
    for i, (want, have) in enumerate(zip(sizes, in_shape, strict=True)):
        while int(np.floor(np.float32(have) * scales[i])) < want:
            scales[i] = np.nextafter(scales[i], np.float32(np.inf))
    return scales


def _drop_unused(graph: onnx.GraphProto, names: set[str]) -> None:
    """Remove the initializers in ``names`` that no node reads any more (the old sizes)."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used or init.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(keep)
