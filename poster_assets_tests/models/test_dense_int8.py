"""Depth and foreground versions carry the precision and the INT8 network, are named without
compiling anything and agree with the compiled estimator's; an accepted INT8 foreground network
runs; ``poster-assets models quantize`` makes and judges it and ``models list`` shows what runs.
On a tiny IS-Net stand-in with convolutions (exported at 64², run at 32² like IS-Net at 640)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from poster_assets.models import dense, int8, precision, quantize, runtime
from poster_assets.models.foreground import ForegroundSegmenter
from poster_assets.models.hub import Models
from poster_assets.models.registry import get_spec
from poster_assets.models.weights import model_version
from poster_assets_tests.models.tiny_onnx import tiny_conv_isnet, tiny_isnet

ISNET = "isnet-general-medium"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTER_ASSETS_OFFLINE", "1")


def _register(models: Path, model: onnx.ModelProto, run: int, exported: int = 64) -> Path:
    """``model`` saved in ``models`` and registered as the default foreground network."""
    models.mkdir(parents=True, exist_ok=True)
    path = models / f"isnet-tiny-{run}.onnx"
    onnx.save(model, str(path))
    entry = {
        "name": ISNET,
        "version": f"tiny-{run}px",
        "source": f"file:{path.name}",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "input": {"shape": [1, 3, exported, exported], "size": [run, run]},
        "output": {"shape": [1, 1, exported, exported]},
    }
    (models / "manifest.json").write_text(json.dumps({"model": [entry]}))
    return models


@pytest.fixture
def models(home: Path) -> Path:
    return _register(home / "models", tiny_conv_isnet(64), run=32)


def _accept(models: Path, prec: str, passes: bool = True) -> quantize.Int8Model:
    """The tiny network quantized with NNCF into the product's plan folder for ``prec``, with a
    verdict that passes (or fails): versions and runners read only the verdict."""
    spec = get_spec(ISNET, models)
    plan = precision.dense_plan(spec, prec, dense.int8_variant(spec))
    check = quantize.Check("stub", 1.0 if passes else 0.0, ">=", 0.5)
    segmenter = ForegroundSegmenter(models, int8=None)
    path = segmenter.selection.path
    return quantize.quantize_gated(
        plan,
        lambda: dense.read_float(spec, path),
        [segmenter._preprocess(rgb) for rgb in int8.calibration_posters(2, seed=3).images],
        lambda _candidate: quantize.GateResult((check,)),
        models,
    )


def _poster(h: int = 90, w: int = 60) -> np.ndarray:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    rgb[h // 3 : 2 * h // 3, w // 4 : 3 * w // 4] = (240, 150, 40)
    return rgb


def test_dense_versions_name_the_precision_without_compiling(models: Path) -> None:
    spec = get_spec(ISNET, models)
    default = runtime.inference_precision()
    compiled_before = dense._compiled_float.cache_info().misses

    version = Models(models).foreground_version()

    assert version == f"{model_version(spec)}:{default}"
    assert dense._compiled_float.cache_info().misses == compiled_before  # nothing was compiled
    assert Models(models).data_version(ISNET) == version
    assert ForegroundSegmenter(models).version == version
    f32 = ForegroundSegmenter(models, precision="f32")
    assert f32.version == ForegroundSegmenter.select(models, precision="f32").version
    assert f32.version == f"{model_version(spec)}:f32"
    # The fallbacks' versions are what they were; the data version of a missing model too.
    assert (
        Models(models).depth_version() == "depth:heuristic-v1" == Models(models).data_version("midas-small")
    )
    assert dense.int8_variant(spec) == "32px"  # the run size: what prepare_dense is called with


def test_the_contract_verdict_is_kept_per_file_and_contract(home: Path) -> None:
    models = _register(home / "models", tiny_isnet(64, skip=True), run=31)  # 31 -> 15 -> 30: misaligned
    chosen = ForegroundSegmenter.select(models)
    assert not chosen.neural and "isnet-general-medium: cannot run at 31x31" in chosen.reason
    assert (
        Models(models).foreground_version() == "fg:grabcut-saliency-v1" == ForegroundSegmenter(models).version
    )
    assert Models(models).data_version(ISNET) == "fg:grabcut-saliency-v1"
    (verdict,) = (models / dense.VERDICTS_DIR).iterdir()
    assert "cannot run at 31x31" in json.loads(verdict.read_text())["problem"]
    # The same file at a size it takes is another contract: judged afresh, and it runs.
    models = _register(home / "models", tiny_isnet(64, skip=True), run=32)
    assert ForegroundSegmenter.select(models).neural
    verdicts = {json.loads(p.read_text())["problem"] is None for p in (models / dense.VERDICTS_DIR).iterdir()}
    assert verdicts == {True, False}


def test_an_accepted_int8_network_runs_and_every_version_says_so(models: Path) -> None:
    spec = get_spec(ISNET, models)
    prec = runtime.inference_precision()
    made = _accept(models, prec)

    seg = ForegroundSegmenter(models)

    assert seg.int8 is not None and seg.int8.id == made.id and seg.int8.xml == made.xml
    expected = f"{model_version(spec)}:int8-{made.id}:{prec}"
    assert (
        seg.version == expected == Models(models).foreground_version() == Models(models).data_version(ISNET)
    )
    assert "passed its gate" in seg.selection.int8.reason
    floats = ForegroundSegmenter(models, int8=None)
    assert floats.int8 is None and floats.version == f"{model_version(spec)}:{prec}"
    # The INT8 network is what runs: close to the float masks, not the same numbers.
    rgb = _poster()
    got, ref = seg.predict(rgb), floats.predict(rgb)
    assert got.shape == rgb.shape[:2] and not np.array_equal(got, ref)
    assert quantize.mask_iou(got, ref) >= 0.9
    # Refused by its gate at another precision: float there, and the version says so.
    _accept(models, "f32", passes=False)
    f32 = ForegroundSegmenter(models, precision="f32")
    assert f32.int8 is None and f32.version == f"{model_version(spec)}:f32"
    assert "failed its gate" in f32.selection.int8.reason
    # `models list` shows what computes the values, and why.
    out = CliRunner().invoke(_cli(), ["models", "list"])
    assert out.exit_code == 0, out.output
    row = next(line for line in out.output.splitlines() if line.startswith(ISNET))
    assert f":int8-{made.id}:{prec}" in row
    assert f"  {ISNET}: INT8 passed its gate (stub +1.0000 >= +0.5000 ok)" in out.output.splitlines()


def test_models_quantize_makes_judges_and_reports_the_foreground_network(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "DENSE_CALIBRATION_POSTERS", 2)  # drawing posters is the slow part
    out = CliRunner().invoke(_cli(), ["models", "quantize", "--only", ISNET, "--gate-posters", "2"])

    assert out.exit_code == 0, out.output
    table = out.output.split("\nnetwork ", 1)[1].splitlines()
    (row,) = [line for line in table if line.startswith(ISNET)]
    spec = get_spec(ISNET, models)
    prec = runtime.inference_precision()
    chosen = precision.dense_choice(spec, prec, models, "32px", gate_posters=2)
    assert chosen.gate is not None
    accepted = row.split()[1]
    assert accepted == ("yes" if chosen.model else "no")
    iou = chosen.gate.figures["mask_iou_mean"]
    assert f"mask_iou_int8_vs_float {iou:+.4f} >= +0.9500" in row
    assert "speedup_int8_vs_float" in row
    assert (
        f"{chosen.gate.figures['float_per_s']:.2f}" in row and f"{chosen.gate.figures['speedup']:.2f}" in row
    )
    assert "judged on 2 posters" in out.output
    assert not (models / "int8" / "ppocr-det").exists()  # --only: nothing else was made
    # Judged on 2 posters, not the default demo: the product still runs float.
    assert ForegroundSegmenter.select(models).version == f"{model_version(spec)}:{prec}"

    bad = CliRunner().invoke(_cli(), ["models", "quantize", "--only", "midas-small"])
    assert (
        bad.exit_code == 2 and "ppocr-det, ppocr-rec, efficientnet-lite0, isnet-general-medium" in bad.output
    )


def _cli():
    from poster_assets.cli import main

    return main


def test_the_network_at_its_run_size_is_kept_as_checked_ir(
    models: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The graph rewritten to its run size is written once as IR under ``models/resized/`` with
    its record; a new process (caches cleared) reads that IR instead of rewriting and predicts
    the same; a changed IR is refused and written again."""
    from poster_assets.models import artifacts, onnx_resize

    rgb = _poster()
    first = ForegroundSegmenter(models, int8=None).predict(rgb)
    (folder,) = (models / dense.RESIZED_DIR).iterdir()
    assert artifacts.artifact_status(folder, rehash=True).state == "ok"

    def no_rewrite(*_: object) -> None:
        raise AssertionError("the graph was rewritten again")

    dense._compiled_float.cache_clear()
    with monkeypatch.context() as m:
        m.setattr(onnx_resize, "read_resized", no_rewrite)
        again = ForegroundSegmenter(models, int8=None).predict(rgb)
    np.testing.assert_array_equal(again, first)

    bin_path = folder / artifacts.IR_FILES[1]
    bin_path.write_bytes(bin_path.read_bytes() + b"\0")
    dense._compiled_float.cache_clear()
    with caplog.at_level("WARNING"):
        healed = ForegroundSegmenter(models, int8=None).predict(rgb)
    np.testing.assert_array_equal(healed, first)
    assert "writing it again" in caplog.text
    assert artifacts.artifact_status(folder, rehash=True).state == "ok"


def test_a_resized_ir_that_cannot_be_written_costs_only_time(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenVINO fails a write (a full disk) with RuntimeError: the network still runs, from the
    graph rewritten in memory, and is not refused as one that cannot run at its size."""

    def full_disk(*_: object, **__: object) -> None:
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(dense.ov, "save_model", full_disk)
    seg = ForegroundSegmenter(models, int8=None)
    assert seg.neural, seg.reason
    assert seg.predict(_poster()).shape == _poster().shape[:2]
    assert not (models / dense.RESIZED_DIR).exists() or not any((models / dense.RESIZED_DIR).iterdir())
