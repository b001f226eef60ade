"""The one OpenVINO ``Core`` of a process, with the compiled-model cache on disk.

Compiling a model is the slow part of start-up (seconds per model); with ``CACHE_DIR`` set
OpenVINO stores the compiled blob and the next process loads it in milliseconds.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import openvino as ov

from poster_assets.settings import openvino_cache_dir

DEVICE = "CPU"


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
