"""The models every extractor uses, loaded once per process."""

import functools
from pathlib import Path

import dagster as dg

from poster_assets import settings
from poster_assets.models.depth import DepthEstimator
from poster_assets.models.foreground import ForegroundSegmenter
from poster_assets.models.ocr import OcrEngine


@functools.cache
def _ocr(models_dir: Path) -> OcrEngine:
    return OcrEngine(models_dir)


@functools.cache
def _depth(models_dir: Path) -> DepthEstimator:
    return DepthEstimator(models_dir)


@functools.cache
def _foreground(models_dir: Path) -> ForegroundSegmenter:
    return ForegroundSegmenter(models_dir)


class ModelsResource(dg.ConfigurableResource):
    """Registry-backed model runners. ``models_dir`` defaults to ``<POSTER_ASSETS_HOME>/models``:
    pulled weights, the user manifest that can add model versions, and the OpenVINO cache."""

    models_dir: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.models_dir).expanduser().resolve() if self.models_dir else settings.models_dir()

    def ocr(self) -> OcrEngine:
        return _ocr(self.path)

    def depth(self) -> DepthEstimator:
        return _depth(self.path)

    def foreground(self) -> ForegroundSegmenter:
        return _foreground(self.path)
