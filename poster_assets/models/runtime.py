"""The one OpenVINO ``Core`` of a process, with the compiled-model cache on disk, and the
precision a network computes in.

Compiling a model is the slow part of start-up (seconds per model); with ``CACHE_DIR`` set
OpenVINO stores the compiled blob and the next process loads it in milliseconds.

Precision: the CPU plugin computes a float network in bf16 by default on CPUs that have
AVX512-BF16 / AMX and in f32 elsewhere, and the values differ (PP-OCR's text map agrees with
f32 at 0.990 in bf16). So a model's version says what computed it: ``versioned(version, ...)``
appends ``:<precision>``, and ``:int8-<id>`` before it when the network is a post-training INT8
one (``models.quantize``); moving to another class of CPU then changes every version and
re-extracts, instead of mixing values of two precisions under one version.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import openvino as ov

from poster_assets.settings import openvino_cache_dir

DEVICE = "CPU"
PRECISION_HINT = "INFERENCE_PRECISION_HINT"
# OpenVINO's element type names -> the short names used in versions.
_PRECISIONS = {
    "f32": "f32",
    "bf16": "bf16",
    "f16": "f16",
    "float32": "f32",
    "bfloat16": "bf16",
    "float16": "f16",
}


@functools.cache
def core(cache_dir: str | None = None) -> ov.Core:
    """A process-wide Core whose compiled-model cache lives in ``cache_dir``."""
    c = ov.Core()
    path = Path(cache_dir) if cache_dir else openvino_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    c.set_property({"CACHE_DIR": str(path)})
    return c


def compile_model(
    model: ov.Model | str | Path,
    hint: str = "THROUGHPUT",
    cache_dir: str | None = None,
    **config: Any,
) -> ov.CompiledModel:
    """Compile for the CPU with a performance hint (``THROUGHPUT`` for batches of posters,
    ``LATENCY`` for a single interactive query)."""
    properties = {"PERFORMANCE_HINT": hint, **config}
    source = str(model) if isinstance(model, (str, Path)) else model
    return core(cache_dir).compile_model(source, DEVICE, properties)


def _short(precision: Any) -> str:
    name = precision.get_type_name() if isinstance(precision, ov.Type) else str(precision).lower()
    # ``dynamic``: no precision lowering (EXECUTION_MODE_HINT=ACCURACY), i.e. the model's own f32.
    if name in ("dynamic", "undefined", ""):
        return "f32"
    if name not in _PRECISIONS:
        raise ValueError(f"unknown inference precision {precision!r}")
    return _PRECISIONS[name]


def inference_precision(compiled: ov.CompiledModel | None = None, hint: str | None = None) -> str:
    """``"bf16"``, ``"f16"`` or ``"f32"``: what OpenVINO computes a float network (or the float
    parts of an INT8 one) in. From ``compiled``, the precision it was compiled with; else
    ``hint`` (an ``INFERENCE_PRECISION_HINT`` a caller will compile with); else the CPU
    plugin's default on this machine, read without compiling anything."""
    if compiled is not None:
        return _short(compiled.get_property(PRECISION_HINT))
    if hint:
        return _short(hint)
    return _default_precision()


@functools.cache
def _default_precision() -> str:
    # A bare Core: asking the plugin must not create (or fix) the process's compile cache folder.
    return _short(ov.Core().get_property(DEVICE, PRECISION_HINT))


def precision_suffix(precision: str, int8: str | None = None) -> str:
    """The tail a model's version gets: ``:bf16``, or ``:int8-<id>:bf16`` for an INT8 network
    whose float parts run in bf16 (``id``: ``quantize.Int8Model.id``)."""
    return (f":int8-{int8}" if int8 else "") + f":{_short(precision)}"


def versioned(
    version: str,
    compiled: ov.CompiledModel | None = None,
    hint: str | None = None,
    int8: str | None = None,
) -> str:
    """``version`` (``weights.model_version(spec)``) with the precision that computes its values:
    ``versioned(model_version(spec), compiled)`` once compiled, or ``versioned(model_version(spec),
    hint=...)`` / ``versioned(model_version(spec))`` (the CPU's default) to name it without
    compiling. Both give the same string for the same configuration."""
    return version + precision_suffix(inference_precision(compiled, hint), int8)
