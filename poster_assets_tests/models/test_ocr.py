"""PP-OCR on OpenVINO with the models bundled in rapidocr's wheel, on a rendered poster."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import matplotlib
import numpy as np
import onnx
import pytest
from PIL import Image, ImageDraw, ImageFont

from poster_assets.models import store
from poster_assets.models.ocr import OcrEngine, reading_order
from poster_assets.models.registry import get_spec

_FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
TITLE = "MIDNIGHT HARBOR"


def _title_bbox() -> tuple[int, int, int, int]:
    font = ImageFont.truetype(str(_FONT), 52)
    return tuple(
        int(v)
        for v in ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((300, 120), TITLE, font, anchor="mm")
    )


def _poster() -> np.ndarray:
    """A 600x900 poster: gradient background, a mountain subject, title on top, credits below."""
    h, w = 900, 600
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([20 + 60 * yy / h, 30 + 40 * xx / w, 90 + 80 * yy / h], axis=-1).astype(np.uint8)
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    draw.polygon([(100, 680), (300, 300), (520, 680)], fill=(200, 120, 60))  # a mountain "subject"
    draw.text((300, 120), TITLE, font=ImageFont.truetype(str(_FONT), 52), fill=(250, 225, 120), anchor="mm")
    credits = ImageFont.truetype(str(_FONT), 24)
    draw.text((60, 800), "ANNA LEE", font=credits, fill=(240, 240, 240))
    draw.text((360, 804), "BO PARK", font=credits, fill=(240, 240, 240))
    return np.asarray(img)


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine()


def test_reads_the_title_with_openvino(engine: OcrEngine) -> None:
    items = engine.read(_poster())
    assert engine.engines == {
        "det": "OpenVINOInferSession",
        "cls": "OpenVINOInferSession",
        "rec": "OpenVINOInferSession",
    }
    assert [i.text for i in items] == [TITLE, "ANNA LEE", "BO PARK"]
    title = items[0]
    assert title.order == 0 and title.confidence > 0.9
    # The detected box hugs the rendered ink (DB boxes are unclipped a little).
    assert np.allclose(title.box, _title_bbox(), atol=12), (title.box, _title_bbox())
    assert np.asarray(title.polygon).shape == (4, 2)


def test_engine_is_shared_and_versioned(engine: OcrEngine) -> None:
    again = OcrEngine()
    assert again._rapid is engine._rapid
    for name in ("ppocr-det", "ppocr-cls", "ppocr-rec"):
        assert store.model_version(get_spec(name)) in engine.version


def test_blank_image_has_no_text(engine: OcrEngine) -> None:
    assert engine.read(np.full((300, 200, 3), 128, np.uint8)) == []


def test_reading_order_groups_lines() -> None:
    def poly(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)

    # Right word sits 6 px lower than the left one but on the same line; a second line below.
    polys = [
        poly(300, 106, 400, 136),
        poly(10, 200, 90, 230),
        poly(20, 100, 200, 130),
        poly(150, 205, 250, 232),
    ]
    assert reading_order(polys) == [2, 0, 1, 3]


def test_user_manifest_switches_the_recognizer(tmp_path: Path) -> None:
    """A model change: a re-exported recogniser (same weights, new metadata, so new bytes)
    registered as a second version is what runs, and every version string changes."""
    base = get_spec("ppocr-rec")
    model = onnx.load(str(store.resolve_path(base)))
    model.metadata_props.add(key="poster_assets_note", value="re-exported for a test")
    onnx.save(model, str(tmp_path / "rec-v2.onnx"))
    sha = hashlib.sha256((tmp_path / "rec-v2.onnx").read_bytes()).hexdigest()
    assert sha != base.sha256
    entry = {
        "name": "ppocr-rec",
        "version": "PP-OCRv6-rec-small-reexport",
        "source": "file:rec-v2.onnx",
        "sha256": sha,
    }
    (tmp_path / "manifest.json").write_text(json.dumps({"model": [entry]}))

    engine = OcrEngine(models_dir=tmp_path)
    assert "ppocr-rec@PP-OCRv6-rec-small-reexport+" + sha[:12] in engine.version
    assert engine.paths[2] == str(tmp_path / "rec-v2.onnx")
    assert store.model_data_version("ppocr-rec", tmp_path) == sha
    assert [i.text for i in engine.read(_poster())][0] == TITLE
