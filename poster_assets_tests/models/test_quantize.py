"""INT8 with accuracy gates (``models.quantize``, ``models.precision``) and the precision in
every version (``models.runtime``), on a tiny ONNX network generated with torch: calibration,
the artefact folder with its sha256 record and gate verdict, the float model kept, a failing
gate keeping float, and the version strings of OCR and EfficientNet (which never compile)."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch

from poster_assets.models import artifacts, precision, quantize, runtime
from poster_assets.models.efficientnet_lite import efficientnet_version
from poster_assets.models.hub import Models
from poster_assets.models.ocr import ocr_version
from poster_assets.models.registry import get_spec
from poster_assets.models.weights import model_version

SIZE = 32


class _TinySegmenter(torch.nn.Module):
    """1x3x32x32 -> 1x1x32x32 in [0, 1]: two convolutions, seeded, so it is the same every run."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.b(torch.relu(self.a(x))))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns about itself
        torch.onnx.export(
            _TinySegmenter().eval(),
            (torch.zeros(1, 3, SIZE, SIZE),),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamo=False,
        )
    return path


def _inputs(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((1, 3, SIZE, SIZE), dtype=np.float32) for _ in range(n)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plan(sha: str, gate: str = "tiny-iou>=0.95") -> quantize.Int8Plan:
    return quantize.Int8Plan(
        name="tiny-seg",
        float_version=f"tiny-seg@v1+{sha[:12]}",
        precision=runtime.inference_precision(),
        gate=gate,
        recipe={**quantize.DEFAULT_RECIPE, "calibration": "random-8"},
    )


class _Counting:
    """Counts calls, to show a second ``quantize_gated`` does no work."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def test_quantize_records_the_artefact_its_sha256_and_its_gate(tiny_onnx: Path, tmp_path: Path) -> None:
    float_sha = _sha(tiny_onnx)
    load = _Counting(lambda: runtime.core().read_model(str(tiny_onnx)))
    calibration = _Counting(lambda: _inputs(8, seed=0))
    # Timing a 32x32 network says nothing; speed checks are tested on their own below.
    gate = _Counting(quantize.mask_iou_gate(load(), _inputs(6, seed=1), min_iou=0.95, min_speedup=None))
    plan = _plan(float_sha)

    made = quantize.quantize_gated(plan, load, calibration, gate, tmp_path)

    folder = plan.folder(tmp_path)
    assert folder == tmp_path / "int8" / "tiny-seg" / f"{plan.precision}-{plan.key}"
    assert made.xml == folder / "model.xml" and made.accepted
    assert (calibration.calls, gate.calls) == (1, 1)
    # The INT8 IR really is INT8: quantize/dequantize pairs around the convolutions.
    ops = {op.get_type_name() for op in runtime.core().read_model(str(made.xml)).get_ops()}
    assert "FakeQuantize" in ops or "FakeConvert" in ops
    # Every file, the verdict included, is recorded with its sha256, as converted IRs are.
    record = json.loads((folder / artifacts.RECORD).read_text())
    assert set(record["files"]) == {"model.xml", "model.bin", quantize.GATE_FILE}
    for name, entry in record["files"].items():
        assert entry["sha256"] == _sha(folder / name)
    assert record["source"] == {"int8_of": plan.float_version, "plan_key": plan.key}
    gate_json = json.loads((folder / quantize.GATE_FILE).read_text())
    assert gate_json["gate"]["passed"] is True
    assert gate_json["gate"]["checks"][0]["name"] == "mask_iou_int8_vs_float"
    assert gate_json["gate"]["figures"]["mask_iou_mean"] >= 0.95
    assert gate_json["plan"] == plan.describe() and gate_json["int8_id"] == made.id
    assert gate_json["calibration_items"] == 8
    # The float model is the reference and stays as it was; no temporaries are left.
    assert _sha(tiny_onnx) == float_sha
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp-")]

    chosen = quantize.choose(plan, tmp_path)
    assert chosen.model is not None and chosen.model.id == made.id
    assert "passed its gate" in chosen.reason
    # Made once: the same plan finds the folder and neither calibrates nor gates again.
    again = quantize.quantize_gated(plan, load, calibration, gate, tmp_path)
    assert again.id == made.id and (calibration.calls, gate.calls) == (1, 1)
    # The accepted network runs and agrees with the float one.
    x = _inputs(1, seed=5)
    (int8_out,) = quantize.run_model(chosen.model.read(), x)
    (float_out,) = quantize.run_model(load(), x)
    assert quantize.mask_iou(int8_out, float_out) >= 0.95


def test_a_failing_gate_keeps_the_float_model(tiny_onnx: Path, tmp_path: Path) -> None:
    float_model = runtime.core().read_model(str(tiny_onnx))
    plan = _plan(_sha(tiny_onnx), gate="tiny-iou>=1.01")
    strict = quantize.mask_iou_gate(float_model, _inputs(4, seed=1), min_iou=1.01, min_speedup=None)

    made = quantize.quantize_gated(plan, lambda: float_model, _inputs(8, seed=0), strict, tmp_path)

    assert not made.accepted and made.gate is not None and not made.gate.passed
    chosen = quantize.choose(plan, tmp_path)
    assert chosen.model is None and "failed its gate" in chosen.reason and "FAILS" in chosen.reason
    assert chosen.gate is not None and chosen.gate.figures["mask_iou_mean"] < 1.01


def test_an_edited_verdict_is_refused(tiny_onnx: Path, tmp_path: Path) -> None:
    float_model = runtime.core().read_model(str(tiny_onnx))
    plan = _plan(_sha(tiny_onnx), gate="tiny-iou>=1.01")
    strict = quantize.mask_iou_gate(float_model, _inputs(4, seed=1), min_iou=1.01, min_speedup=None)
    quantize.quantize_gated(plan, lambda: float_model, _inputs(8, seed=0), strict, tmp_path)
    path = plan.folder(tmp_path) / quantize.GATE_FILE
    raw = json.loads(path.read_text())
    raw["gate"]["checks"][0]["limit"] = 0.0  # someone "passes" the gate by hand
    path.write_text(json.dumps(raw))

    chosen = quantize.choose(plan, tmp_path)
    assert chosen.model is None and "changed" in chosen.reason
    # Making it again replaces the edited folder with an honest one.
    remade = quantize.quantize_gated(plan, lambda: float_model, _inputs(8, seed=0), strict, tmp_path)
    assert not remade.accepted and artifacts.problem(plan.folder(tmp_path)) is None


def test_plan_key_changes_with_what_the_network_is_made_from(tiny_onnx: Path) -> None:
    plan = _plan(_sha(tiny_onnx))
    keys = {
        plan.key,
        _plan("0" * 64).key,
        _plan(_sha(tiny_onnx), gate="other").key,
        quantize.Int8Plan(**{**vars(plan), "precision": "f32" if plan.precision != "f32" else "bf16"}).key,
        quantize.Int8Plan(**{**vars(plan), "context": {"ppocr-det": "x"}}).key,
        quantize.Int8Plan(**{**vars(plan), "recipe": {**plan.recipe, "preset": "mixed"}}).key,
    }
    assert len(keys) == 6


def test_recipe_keeps_the_end_convolutions_in_float(tiny_onnx: Path) -> None:
    model = runtime.core().read_model(str(tiny_onnx))
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    options = quantize._nncf_options(model, {**quantize.DEFAULT_RECIPE, "float_ends": 1})
    assert len(convs) == 2 and sorted(options["ignored_scope"].names) == sorted(convs)
    assert "ignored_scope" not in quantize._nncf_options(model, quantize.DEFAULT_RECIPE)


def test_speed_check_times_both_sides_alike() -> None:
    import time

    def side(seconds: float):
        def run() -> int:
            time.sleep(seconds)
            return 4

        return run

    check, figures = quantize.speed_check(side(0.02), side(0.01), min_speedup=1.0, rounds=3)
    assert check.passed and check.name == "speedup_int8_vs_float"
    assert 1.3 < figures["speedup"] < 2.5 and figures["int8_per_s"] > figures["float_per_s"]
    slower, _ = quantize.speed_check(side(0.01), side(0.02), min_speedup=1.0, rounds=3)
    assert not slower.passed


def test_checks_and_neighbour_recall() -> None:
    assert quantize.delta_check("exact", 0.90, 0.895, ">=", -0.01).passed
    assert not quantize.delta_check("exact", 0.90, 0.885, ">=", -0.01).passed
    assert quantize.delta_check("exact", 0.905, 0.895, ">=", -0.01).passed  # two posters of 200, exactly
    assert not quantize.delta_check("cer", 0.010, 0.016, "<=", 0.005).passed
    assert not quantize.Check("nan", float("nan"), ">=", 0.0).passed
    assert not quantize.GateResult(()).passed  # a gate with nothing checked passes nothing
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 16)).astype(np.float32)
    assert quantize.neighbour_recall(x, x, k=10) == 1.0
    assert quantize.neighbour_recall(x, x + 1e-4 * rng.normal(size=x.shape), k=10) > 0.95
    assert quantize.neighbour_recall(x, rng.normal(size=x.shape), k=10) < 0.5


def test_precision_names_what_computes(tiny_onnx: Path) -> None:
    default = runtime.inference_precision()
    assert default in ("bf16", "f32", "f16")
    model = runtime.core().read_model(str(tiny_onnx))
    assert runtime.inference_precision(runtime.compile_model(model)) == default
    f32 = runtime.compile_model(model, INFERENCE_PRECISION_HINT="f32")
    assert runtime.inference_precision(f32) == "f32" == runtime.inference_precision(hint="f32")
    # ACCURACY mode reports no lowering ("dynamic"): the model's own f32.
    accurate = runtime.compile_model(model, EXECUTION_MODE_HINT="ACCURACY")
    assert runtime.inference_precision(accurate) == "f32"
    # Compiled and not compiled give the same version.
    assert runtime.versioned("m@v+abc", f32) == runtime.versioned("m@v+abc", hint="f32") == "m@v+abc:f32"
    assert (
        runtime.versioned("m@v+abc", hint=ov.Type.bf16, int8="0123456789") == "m@v+abc:int8-0123456789:bf16"
    )


def _accept(
    plan: quantize.Int8Plan, tiny_onnx: Path, models_dir: Path, passes: bool = True
) -> quantize.Int8Model:
    """Put a judged INT8 network in ``plan``'s folder (the tiny one: versions never compile it)."""
    check = quantize.Check("stub", 1.0 if passes else 0.0, ">=", 0.5)
    return quantize.quantize_gated(
        plan,
        lambda: runtime.core().read_model(str(tiny_onnx)),
        _inputs(4, seed=0),
        lambda _candidate: quantize.GateResult((check,)),
        models_dir,
    )


def test_ocr_version_names_precision_and_the_int8_networks_in_use(tiny_onnx: Path, tmp_path: Path) -> None:
    default = runtime.inference_precision()
    specs = [get_spec(n) for n in ("ppocr-det", "ppocr-cls", "ppocr-rec")]
    plain = ocr_version(tmp_path)
    for spec in specs:
        assert f"{model_version(spec)}:{default}" in plain
    assert ":int8-" not in plain

    det = _accept(precision.ocr_plan("ppocr-det", specs, default), tiny_onnx, tmp_path)
    with_det = ocr_version(tmp_path)
    assert f"{model_version(specs[0])}:int8-{det.id}:{default}," in with_det
    assert f"{model_version(specs[2])}:{default}+" in with_det
    # The recogniser's plan is judged behind the detector in use: a new detector, a new plan.
    det_version = f"{model_version(specs[0])}:int8-{det.id}:{default}"
    behind_det = precision.ocr_plan("ppocr-rec", specs, default, det_version)
    assert behind_det.key != precision.ocr_plan("ppocr-rec", specs, default).key
    rec = _accept(behind_det, tiny_onnx, tmp_path, passes=False)  # refused by its gate
    assert ocr_version(tmp_path) == with_det
    choices = precision.ocr_choices(specs, tmp_path)
    assert choices["ppocr-det"].model == det and choices["ppocr-rec"].model is None
    assert "failed its gate" in choices["ppocr-rec"].reason and rec.gate is not None
    # The models' source assets change with them (their data version is what computes).
    models = Models(tmp_path)
    assert models.data_version("ppocr-det") == det_version
    assert models.data_version("ppocr-rec") == f"{model_version(specs[2])}:{default}"


def test_efficientnet_version_is_f32_or_int8(tiny_onnx: Path, tmp_path: Path) -> None:
    spec = get_spec("efficientnet-lite0")
    assert efficientnet_version(tmp_path) == f"{model_version(spec)}:f32"
    made = _accept(precision.efficientnet_plan(spec), tiny_onnx, tmp_path)
    assert efficientnet_version(tmp_path) == f"{model_version(spec)}:int8-{made.id}:f32"
    assert Models(tmp_path).data_version(spec.name) == efficientnet_version(tmp_path)
    # Another CPU class or recipe is another plan: nothing made for it, so float.
    assert precision.efficientnet_plan(spec).folder(tmp_path) == made.xml.parent


def test_a_foreground_network_is_judged_by_mask_iou_in_one_call(
    tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path a foreground model (IS-Net) takes: ``int8.prepare_dense`` calibrates on demo
    posters through the estimator's preprocessing and keeps INT8 only if its masks match."""
    import cv2

    from poster_assets.models import int8
    from poster_assets.models.registry import InputContract, ModelSpec, OutputContract

    monkeypatch.setattr(precision, "DENSE_CALIBRATION_POSTERS", 3)  # drawing posters is the slow part
    spec = ModelSpec(
        name="tiny-seg",
        task="foreground",
        version="v1",
        format="onnx",
        source="file:tiny.onnx",
        sha256=_sha(tiny_onnx),
        input=InputContract(shape=(1, 3, SIZE, SIZE), size=(SIZE, SIZE)),
        output=OutputContract(shape=(1, 1, SIZE, SIZE)),
    )

    def preprocess(rgb: np.ndarray) -> np.ndarray:
        x = cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    posters = int8.calibration_posters(3, seed=7)
    made = int8.prepare_dense(
        spec,
        lambda: runtime.core().read_model(str(tiny_onnx)),
        preprocess,
        lambda raw: raw[0, 0],
        tmp_path,
        gate_posters=3,
        posters=lambda: posters,
        min_speedup=None,
    )
    assert made.accepted and made.gate is not None
    assert [c.name for c in made.gate.checks] == ["mask_iou_int8_vs_float"]
    assert made.gate.checks[0].limit == 0.95
    assert made.record["calibration_items"] == 3
    prec = runtime.inference_precision()
    chosen = precision.dense_choice(spec, prec, tmp_path, gate_posters=3, min_speedup=None)
    assert chosen.model is not None and chosen.model.id == made.id
    # The product's plan (judged on the full demo, speed included) is another folder.
    assert precision.dense_choice(spec, prec, tmp_path).model is None


@pytest.mark.slow
def test_the_ocr_engine_runs_accepted_int8_networks(tmp_path: Path) -> None:
    """The real detector and recogniser quantized on two demo posters (a stub gate accepts
    them): rapidocr loads the INT8 IRs (the recogniser keeps its character list), the engine and
    the cheap version name both, and releasing a throwaway engine forgets it."""
    from poster_assets.models import int8
    from poster_assets.models.ocr import OcrEngine, _ocr_specs

    posters = int8.calibration_posters(2)
    inputs = int8.capture_ocr_inputs(OcrEngine(int8={}), posters.images)
    specs, paths = _ocr_specs(tmp_path)
    prec = runtime.inference_precision()
    accept = quantize.GateResult((quantize.Check("stub", 1.0, ">=", 0.5),))
    det_plan = precision.ocr_plan("ppocr-det", specs, prec)
    det = quantize.quantize_gated(
        det_plan, lambda: runtime.core().read_model(paths[0]), inputs["ppocr-det"], lambda _: accept, tmp_path
    )
    det_version = f"{model_version(specs[0])}:int8-{det.id}:{prec}"
    rec_plan = precision.ocr_plan("ppocr-rec", specs, prec, det_version)
    rec = quantize.quantize_gated(
        rec_plan, lambda: runtime.core().read_model(paths[2]), inputs["ppocr-rec"], lambda _: accept, tmp_path
    )

    engine = OcrEngine(tmp_path)  # "auto": both passed their (stub) gates
    assert engine.int8 == {"ppocr-det": det, "ppocr-rec": rec}
    assert engine.paths[0] == str(det.xml) and engine.paths[2] == str(rec.xml)
    assert engine.version == ocr_version(tmp_path)
    assert f":int8-{det.id}:{prec}," in engine.version and f":int8-{rec.id}:{prec}+" in engine.version
    assert set(engine.precisions.values()) == {prec}
    # Offline, rapidocr would fail to fetch a dictionary if the INT8 IR had lost its own.
    read = " ".join(i.text for i in engine.read(posters.images[0]))
    assert sum(c.isalpha() for c in read) >= 3
    floats = OcrEngine(tmp_path, int8={})
    assert ":int8-" not in floats.version and floats.paths[0] == paths[0]
