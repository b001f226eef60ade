"""The one way every model is loaded: ``Models(models_dir)``.

Each family (PP-OCR, depth, foreground, EfficientNet-Lite0, the trained SSL encoder) is built
from its registry entry once per process, models folder and *stamp*: the stamp changes when
weights are pulled or replaced, the user manifest is edited, a new encoder is promoted or an
INT8 network is judged (``quantize``), so a long-lived code server picks up a model change
without a restart, and a stale runner never labels new values. Callers that only need to know
which values are current ask for versions, which never compile a network.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TypeVar

from poster_assets import settings
from poster_assets.models import precision, runtime
from poster_assets.models.dense import release_compiled, select_network
from poster_assets.models.depth import DepthEstimator
from poster_assets.models.efficientnet_lite import MODEL_NAME as EFFICIENTNET
from poster_assets.models.efficientnet_lite import EfficientNetLite0Embedder, efficientnet_version
from poster_assets.models.foreground import ForegroundSegmenter
from poster_assets.models.ocr import OCR_MODELS, OcrEngine, _ocr_specs, ocr_version, release_engines
from poster_assets.models.quantize import gate_records
from poster_assets.models.registry import get_spec
from poster_assets.models.ssl_encoder import POINTER, SslEmbedder, SslEncoder, current_encoder, ssl_dir
from poster_assets.models.weights import model_status

_Stamp = tuple[tuple[str, int, int], ...]


def _stamp(models_dir: Path) -> _Stamp:
    files = [p for p in (models_dir.iterdir() if models_dir.is_dir() else ()) if p.is_file()]
    files.append(ssl_dir(models_dir) / POINTER)
    # A newly judged INT8 network changes which network a runner loads, and its version.
    files.extend(gate_records(models_dir))
    return tuple(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()))


_Runner = TypeVar("_Runner", OcrEngine, DepthEstimator, ForegroundSegmenter, EfficientNetLite0Embedder)


@functools.lru_cache(maxsize=16)
def _runner(family: type[_Runner], models_dir: Path, stamp: _Stamp) -> _Runner:
    return family(models_dir)


@functools.lru_cache(maxsize=2)
def _ssl_embedder(ir_path: Path) -> SslEmbedder:
    # IR folders are named by the checkpoint's hash, so a path always holds the same encoder.
    return SslEmbedder(ir_path)


class Models:
    """Registry-backed runners of one models folder (default ``<POSTER_ASSETS_HOME>/models``:
    pulled weights, the user manifest, converted IRs, trained encoders, the OpenVINO cache)."""

    def __init__(self, models_dir: str | Path | None = None) -> None:
        self._path = Path(models_dir).expanduser().resolve() if models_dir else settings.models_dir()

    @property
    def path(self) -> Path:
        return self._path

    def ocr(self) -> OcrEngine:
        return _runner(OcrEngine, self.path, _stamp(self.path))

    def depth(self) -> DepthEstimator:
        return _runner(DepthEstimator, self.path, _stamp(self.path))

    def foreground(self) -> ForegroundSegmenter:
        return _runner(ForegroundSegmenter, self.path, _stamp(self.path))

    def efficientnet(self) -> EfficientNetLite0Embedder:
        return _runner(EfficientNetLite0Embedder, self.path, _stamp(self.path))

    def ssl_encoder(self) -> SslEncoder | None:
        """The promoted encoder, or None before the first one."""
        return current_encoder(self.path)

    def ssl_embedder(self, encoder: SslEncoder) -> SslEmbedder:
        net = _ssl_embedder(encoder.ir_path)
        if net.version != encoder.version:
            raise RuntimeError(f"{encoder.ir_path} is {net.version}, but {POINTER} says {encoder.version}")
        return net

    @staticmethod
    def release() -> None:
        """Forget every runner and compiled network this process built (of any models folder):
        their memory goes once the last caller drops its runners. For a step whose networks no
        later step of the same process uses; the next call builds them again (from the compile
        cache: about a second each)."""
        _runner.cache_clear()
        _ssl_embedder.cache_clear()
        release_engines()
        release_compiled()

    # Versions without loading a network: for deciding what is current and what is stale.
    def ocr_version(self) -> str:
        return ocr_version(self.path)

    def depth_version(self) -> str:
        return DepthEstimator.select(self.path).version

    def foreground_version(self) -> str:
        return ForegroundSegmenter.select(self.path).version

    def efficientnet_version(self) -> str:
        return efficientnet_version(self.path)

    def ssl_version(self) -> str | None:
        encoder = self.ssl_encoder()
        return encoder.version if encoder else None

    def data_version(self, name: str) -> str:
        """The data version of model ``name``'s source asset: what computes its values, as its
        values are labelled (``weights.model_data_version`` plus, for the networks, the
        precision and the INT8 network in use), so that a new INT8 network or another class of
        CPU marks the values stale too. A depth or foreground network that does not fit its
        contract is its fallback. Never compiles."""
        spec = get_spec(name, self.path)
        if spec.task in ("depth", "foreground"):
            return select_network(spec, self.path).version
        status = model_status(spec, self.path)
        if status.state != "present":
            return status.in_use
        if name == EFFICIENTNET:
            return self.efficientnet_version()
        if name in OCR_MODELS:
            specs, _ = _ocr_specs(self.path)
            choices = precision.ocr_choices(specs, self.path)
            if name in choices:
                return precision.chosen_version(choices[name], status.spec)
            return precision.float_version(status.spec, runtime.inference_precision())
        return status.in_use
