"""The models every extractor uses, loaded once per process."""

import functools
from pathlib import Path

import dagster as dg

from poster_assets import settings
from poster_assets.models.depth import DepthEstimator
from poster_assets.models.foreground import ForegroundSegmenter
from poster_assets.models.ocr import OcrEngine, ocr_version


def _stamp(models_dir: Path) -> tuple:
    """Changes when weights are pulled or replaced or the user manifest is edited, so a long-lived
    code server picks up a model change without a restart."""
    if not models_dir.is_dir():
        return ()
    return tuple(
        sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in models_dir.iterdir() if p.is_file())
    )


# Keyed by the stamp as well as the folder: a stale runner must never label new values.
@functools.lru_cache(maxsize=4)
def _ocr(models_dir: Path, stamp: tuple) -> OcrEngine:
    return OcrEngine(models_dir)


@functools.lru_cache(maxsize=4)
def _depth(models_dir: Path, stamp: tuple) -> DepthEstimator:
    return DepthEstimator(models_dir)


@functools.lru_cache(maxsize=4)
def _foreground(models_dir: Path, stamp: tuple) -> ForegroundSegmenter:
    return ForegroundSegmenter(models_dir)


class ModelsResource(dg.ConfigurableResource):
    """Registry-backed model runners. ``models_dir`` defaults to ``<POSTER_ASSETS_HOME>/models``:
    pulled weights, the user manifest that can add model versions, and the OpenVINO cache."""

    models_dir: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.models_dir).expanduser().resolve() if self.models_dir else settings.models_dir()

    def ocr(self) -> OcrEngine:
        return _ocr(self.path, _stamp(self.path))

    def ocr_version(self) -> str:
        """The current OCR version, without loading the OCR models."""
        return ocr_version(self.path)

    def depth(self) -> DepthEstimator:
        return _depth(self.path, _stamp(self.path))

    def foreground(self) -> ForegroundSegmenter:
        return _foreground(self.path, _stamp(self.path))
