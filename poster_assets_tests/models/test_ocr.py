"""PP-OCR on OpenVINO with the models bundled in rapidocr's wheel, on a rendered poster."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import onnx
import pytest
from PIL import Image, ImageDraw, ImageFont

from poster_assets.demo import generate_corpus, load_ground_truth
from poster_assets.models import ocr, weights
from poster_assets.models.ocr import (
    DET_MAX_SHORT_SIDE,
    OcrEngine,
    det_resize,
    insert_word_gaps,
    ocr_version,
    pool_shape,
    profile_inference,
    reading_order,
    rec_batches,
)
from poster_assets.models.registry import get_spec

# Runs the real PP-OCR models.
pytestmark = pytest.mark.slow

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
    assert engine.engines == {"det": "CompiledSession", "cls": "CompiledSession", "rec": "CompiledSession"}
    assert [i.text for i in items] == [TITLE, "ANNA LEE", "BO PARK"]
    title = items[0]
    assert title.order == 0 and title.confidence > 0.9
    # The detected box hugs the rendered ink (DB boxes are unclipped a little).
    assert np.allclose(title.box, _title_bbox(), atol=12), (title.box, _title_bbox())
    assert np.asarray(title.polygon).shape == (4, 2)


def test_engine_is_shared_and_versioned(engine: OcrEngine) -> None:
    again = OcrEngine()
    assert again._single()[0] is engine._single()[0]
    for name in ("ppocr-det", "ppocr-cls", "ppocr-rec"):
        assert weights.model_version(get_spec(name)) in engine.version


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
    model = onnx.load(str(weights.resolve_path(base)))
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
    assert ocr_version(tmp_path) == engine.version  # the cheap path names the same models
    assert "ppocr-rec@PP-OCRv6-rec-small-reexport+" + sha[:12] in engine.version
    assert engine.paths[2] == str(tmp_path / "rec-v2.onnx")
    assert (
        weights.model_data_version("ppocr-rec", tmp_path)
        == "ppocr-rec@PP-OCRv6-rec-small-reexport+" + sha[:12]
    )
    assert [i.text for i in engine.read(_poster())][0] == TITLE


def test_keeps_spaces_in_a_generated_poster_title(
    engine: OcrEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo generator's first poster (seed 0): "FRONTIER OF THE OUTLAW", letter-spaced
    DejaVu Serif Bold in two lines, which the recogniser alone reads as "FRONTIEROF" when the
    line is padded to the poster's widest line (rapidocr's one batch)."""
    generate_corpus(tmp_path, n=1, seed=0)
    (gt,) = load_ground_truth(tmp_path).values()
    assert gt.font.startswith("DejaVu") and len(gt.title_lines) == 2
    rgb = np.asarray(Image.open(gt.path).convert("RGB"))
    x0, y0, x1, y1 = gt.title_box

    def title(items: list) -> list[str]:
        inside = [
            i for i in items if x0 <= (i.box[0] + i.box[2]) / 2 < x1 and y0 <= (i.box[1] + i.box[3]) / 2 < y1
        ]
        return [i.text for i in inside]

    assert title(engine.read(rgb)) == gt.title_lines
    raw = OcrEngine(word_gaps=False)
    assert raw.version != engine.version and engine.version.endswith("+spaces-v1")
    # In its own width bucket the recogniser keeps these spaces itself ...
    assert title(raw.read(rgb)) == gt.title_lines
    # ... padded to the widest line it drops one, and the pass is what restores it.
    monkeypatch.setattr(
        ocr, "rec_batches", lambda widths, least: [(list(range(len(widths))), max(least, *widths))]
    )
    assert title(raw.read(rgb)) != gt.title_lines
    assert title(engine.read(rgb)) == gt.title_lines


def _spaced_crop(words: list[str], gap: int) -> tuple[np.ndarray, list[list[int]], float]:
    """A BGR line crop of ``words`` (DejaVu Sans Bold, 40 px) with ``gap`` px between words,
    and each character's CTC frame as the recogniser would place it (8 px per frame at 48 px)."""
    font = ImageFont.truetype(str(_FONT.with_name("DejaVuSans-Bold.ttf")), 40)
    img = Image.new("RGB", (900, 48), (20, 30, 60))
    draw = ImageDraw.Draw(img)
    x, cols = 6.0, []
    for word in words:
        for ch in word:
            draw.text((x, 4), ch, font=font, fill=(240, 200, 90))
            width = draw.textlength(ch, font=font)
            cols.append(int((x + width / 2) // 8))
            x += width + 2
        x += gap
    crop = np.asarray(img)[:, : int(x) + 6, ::-1].copy()
    return crop, [cols], crop.shape[1] / 8


def test_insert_word_gaps_on_a_drawn_line() -> None:
    crop, cols, frames = _spaced_crop(["RETURN", "TO", "ENGINE"], gap=24)
    assert insert_word_gaps("RETURNTOENGINE", cols, frames, crop) == "RETURN TO ENGINE"
    # Letters alone (no word gaps) are left as they are; spaces already there are kept.
    crop, cols, frames = _spaced_crop(["HORIZON"], gap=0)
    assert insert_word_gaps("HORIZON", cols, frames, crop) == "HORIZON"
    crop, cols, frames = _spaced_crop(["TO", "ENGINE"], gap=24)
    assert insert_word_gaps("TO ENGINE", cols, frames, crop) == "TO ENGINE"


def test_read_many_matches_read_in_input_order(engine: OcrEngine, tmp_path: Path) -> None:
    """The batch path (a pool of one-stream engines on threads) gives ``read``'s text and boxes,
    each poster's in its own slot, whatever the order and with a blank image in the middle."""
    generate_corpus(tmp_path, n=3, seed=0)
    images = [np.asarray(Image.open(gt.path).convert("RGB")) for gt in load_ground_truth(tmp_path).values()]
    images.insert(1, np.full((300, 200, 3), 128, np.uint8))
    images.append(images[0])  # a repeat: more posters than engines, so engines are reused
    single = [engine.read(rgb) for rgb in images]
    many = engine.read_many(images)
    assert [[i.text for i in items] for items in many] == [[i.text for i in items] for items in single]
    assert [[i.polygon for i in items] for items in many] == [[i.polygon for i in items] for items in single]
    assert many[1] == [] and all(many[k] for k in (0, 2, 3, 4))
    assert len({tuple(i.text for i in items) for items in many}) == 4  # distinct posters, not one repeated
    assert engine.read_many([]) == []
    with pytest.raises(ValueError, match="HxWx3"):
        engine.read_many([np.zeros((10, 10), np.uint8)])


def test_an_engine_compiles_only_what_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extraction pass only calls ``read_many``: its engine compiles the pool's three
    networks, not also ``read``'s (seconds of loads in every batch run), and names their
    precision from them; the first ``read`` compiles its own."""
    monkeypatch.setenv(ocr.DET_SIDE_ENV, "608")  # a configuration no other test compiled
    compiled: list[str] = []
    compile_model = ocr.runtime.compile_model
    monkeypatch.setattr(
        ocr.runtime,
        "compile_model",
        lambda path, **kw: compiled.append(kw["hint"]) or compile_model(path, **kw),
    )
    engine = OcrEngine()
    try:
        assert compiled == []
        assert engine.read_many([_poster()])[0][0].text == TITLE
        assert compiled == ["THROUGHPUT"] * 3
        assert engine.version == ocr_version() and set(engine.precisions) == set(ocr.OCR_MODELS)
        assert engine.read(_poster())[0].text == TITLE
        assert compiled == ["THROUGHPUT"] * 3 + ["LATENCY"] * 3
    finally:
        engine.release()


def test_pool_shape_splits_the_cores() -> None:
    assert pool_shape(1) == (1, 1)
    assert pool_shape(2) == (1, 2)
    assert pool_shape(8) == (2, 4)
    assert pool_shape(16) == (4, 4)
    engines, threads = pool_shape(64)
    assert engines * threads <= 64 and threads >= 4


def test_rec_batches_pad_wide_lines_to_few_widths() -> None:
    """Narrow lines (padded to the minimum width anyway) share batches; a wide line goes alone,
    padded up to a step of 192 px: few input shapes, each line padded by less than a step."""
    widths = [1700, 90, 400, 320, 385, 250, 2000]
    assert rec_batches(widths, min_width=320) == [
        ([1, 3, 5], 320),
        ([0], 1728),
        ([2], 576),
        ([4], 576),
        ([6], 2112),
    ]
    assert rec_batches([], 320) == []
    many = rec_batches([100] * 20, 320, most=16)
    assert [(len(b), w) for b, w in many] == [(16, 320), (4, 320)]
    rng = np.random.default_rng(0)
    widths = [int(w) for w in rng.integers(20, 2200, 500)]
    shapes = {(len(b), w) for b, w in rec_batches(widths, 320)}
    assert len(shapes) <= 16 + 2200 // 192 + 1
    for batch, width in rec_batches(widths, 320):
        assert all(widths[i] <= width < max(widths[i], 320) + 192 for i in batch)


def test_recognition_runs_one_inference_per_batch(engine: OcrEngine) -> None:
    """A poster's lines of very different widths are recognised in several inferences, none
    padded beyond its own bucket's widest line; what they read is what ``read`` returns."""
    with profile_inference() as profile:
        items = engine.read(_poster())
    rec = {shape: calls for (name, shape), (calls, _) in profile.calls.items() if name == "ppocr-rec"}
    assert [i.text for i in items] == [TITLE, "ANNA LEE", "BO PARK"]
    # The title (~11 line heights wide) alone, padded to a step of 192 px; the short lines
    # together at the minimum width.
    (narrow, wide) = sorted(rec, key=lambda shape: shape[3])
    assert narrow[0] >= 2 and narrow[3] == 320 and wide[0] == 1 and wide[3] % 192 == 0, rec
    assert profile.seconds("ppocr-det") > 0 and profile.seconds("ppocr-cls") > 0


_START = """
import json, sys, time
t0 = time.perf_counter()
from poster_assets.models.ocr import OcrEngine
from poster_assets_tests.models.test_ocr import _poster
t1 = time.perf_counter()
engine = OcrEngine(sys.argv[1])
rapid = engine._single()[0]
t2 = time.perf_counter()
compiled = [s.session.get_compiled_model() for s in (rapid.text_det.session,
    rapid.text_cls.session, rapid.text_rec.session)]
print(json.dumps({"start_s": t2 - t1, "cached": [c.get_property("LOADED_FROM_CACHE") for c in compiled],
    "read": [i.text for i in engine.read(_poster())]}))
"""


def test_a_second_process_loads_the_networks_from_the_compile_cache(tmp_path: Path) -> None:
    """The networks compile through the project's Core, so their compiled form lands in the models
    folder's cache; the next process loads it from there (and the recogniser's dictionary from
    beside it) and reads the same text."""

    def start() -> dict:
        out = subprocess.run([sys.executable, "-c", _START, str(tmp_path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    cold, warm = start(), start()
    assert cold["cached"] == [False, False, False]
    assert warm["cached"] == [True, True, True]
    assert list((tmp_path / "ov_cache").glob("ppocr-characters-*.txt"))
    assert warm["read"] == cold["read"] == [TITLE, "ANNA LEE", "BO PARK"]


def test_another_detector_size_is_an_option_named_in_the_version(
    engine: OcrEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """736 (rapidocr's) is the default and unnamed; another short side changes the values, so
    the version names it, and the cheap ``ocr_version`` agrees with the engine's."""
    assert engine.det_side == 736 and not re.search(r"\+det\d", engine.version)
    monkeypatch.setenv(ocr.DET_SIDE_ENV, "640")
    smaller = OcrEngine()
    assert smaller.det_side == 640 and smaller._single()[0] is not engine._single()[0]
    assert smaller.version == engine.version.replace("+rec-192px-v1", "+rec-192px-v1+det640")
    assert ocr_version() == smaller.version
    with profile_inference() as profile:
        smaller.read(_poster())
    assert [shape for (name, shape) in profile.calls if name == "ppocr-det"] == [(1, 3, 960, 640)]
    monkeypatch.setenv(ocr.DET_SIDE_ENV, "large")
    with pytest.raises(ValueError, match="POSTER_ASSETS_OCR_DET_SIDE"):
        ocr_version()


def test_the_detector_input_is_rapidocrs_in_float32() -> None:
    """``det_input`` computes in float32 what rapidocr's pre-processing computes via float64:
    the same values, bit for bit, on a poster and on noise, scaled up or left at its size."""
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    noise = np.random.default_rng(0).integers(0, 256, (1100, 730, 3)).astype(np.uint8)
    for img in (np.ascontiguousarray(_poster()[..., ::-1]), noise):
        for pre in (DetPreProcess(736, "min"), DetPreProcess(640, "min"), DetPreProcess(960, "max")):
            expected, got = pre(img), ocr.det_input(pre, img)
            assert got.dtype == expected.dtype == np.float32 and got.shape == expected.shape
            assert np.array_equal(got, expected)


def test_the_detector_input_is_rapidocrs_up_to_the_cap_and_capped_beyond() -> None:
    """Up to a short side of DET_MAX_SHORT_SIDE the detector sees exactly the pixels rapidocr's own
    resize gives (so values do not change for such posters); a larger image is scaled down to it."""
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    rng = np.random.default_rng(0)
    for h, w in [(900, 600), (1500, 1000), (1000, 1500), (737, 1111), (1024, 1536), (420, 2000)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(det_resize(img, 736), DetPreProcess(736, "min").resize(img))
    big = rng.integers(0, 256, (3000, 2000, 3), dtype=np.uint8)
    assert det_resize(big, 736).shape == (1536, DET_MAX_SHORT_SIDE, 3)
    assert det_resize(big, 1280).shape[1] == 1280  # a larger side asked for is kept


def test_a_large_scan_is_detected_at_the_capped_size(engine: OcrEngine) -> None:
    """A poster scanned at 2.5x (2250 px wide, rapidocr brings it to 2000 px long) is detected at a
    1024 px short side and its lines are still read."""
    small = _poster()
    scan = cv2.resize(small, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)
    with profile_inference() as profile:
        items = engine.read(scan)
    det_shapes = {shape for (name, shape) in profile.calls if name == "ppocr-det"}
    assert {min(shape[2:]) for shape in det_shapes} == {DET_MAX_SHORT_SIDE}, det_shapes
    assert [i.text for i in items] == [i.text for i in engine.read(small)]
