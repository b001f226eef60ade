"""Float vs INT8, per model: throughput at the shapes the product uses and the accuracy gates,
in one run.

    python benchmarks/int8_gates.py                      # the product's gates (demo, 200 posters)
    python benchmarks/int8_gates.py --n 40 --models-dir /tmp/int8-models   # a quick look

``poster-assets models quantize`` makes and judges the same networks without the timings.

The INT8 networks are made and judged through ``models.int8.prepare``, the call that makes them
for the product: once per models folder (a second run only measures), recorded with their
sha256 and gate verdict under ``<models>/int8/``. Only networks judged on the default demo
(``--n 200``) are ever used by the product; other sizes make their own folders.

Throughput, float and INT8 alternating in rounds (the median round is shown, so a busy shared
machine skews both sides alike):

- ``ppocr-det``: the detector's inputs as rapidocr feeds them for the first ``--speed-posters``
  posters (short side 736, e.g. 1x3x1088x736), compiled as rapidocr does (LATENCY, the CPU's
  default precision); inferences/s.
- ``ppocr-rec``: the recogniser's line batches of the same posters (up to 16 lines, 48 px
  high); batches/s, lines/s alongside.
- ``ocr``: whole posters through ``OcrEngine.read`` (det, cls, rec, rapidocr's and our post-
  processing): float, what the product runs (INT8 where the gate passed), all INT8.
- ``efficientnet-lite0``: ``EfficientNetLite0Embedder.embed`` of letterboxed posters at 224²
  in batches of 16 (THROUGHPUT, f32 as the product runs it); images/s.
- the foreground network in use (IS-Net at its run size, 640²): the network alone on the
  posters as ``ForegroundSegmenter`` feeds it (THROUGHPUT, the CPU's precision), inferences/s;
  then ``ForegroundSegmenter.predict_batch`` of whole posters, posters/s. Its gate: mean IoU of
  INT8 and float masks >= 0.95 (``precision.dense_plan``).

    python benchmarks/int8_gates.py --only isnet-general-medium --n 24   # the foreground alone
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from poster_assets.embed.kinds import foreground_crop
from poster_assets.models import int8, runtime
from poster_assets.models.dense import read_float
from poster_assets.models.efficientnet_lite import MODEL_NAME as EFFICIENTNET
from poster_assets.models.efficientnet_lite import EfficientNetLite0Embedder
from poster_assets.models.foreground import ForegroundSegmenter
from poster_assets.models.ocr import OcrEngine, _ocr_specs
from poster_assets.models.quantize import Int8Model, network_runner, rates
from poster_assets.search import quality
from poster_assets.settings import models_dir as default_models_dir


def _shape(inputs: Sequence[np.ndarray]) -> str:
    shapes = sorted({tuple(x.shape) for x in inputs}, key=lambda s: -np.prod(s))
    first = "x".join(map(str, shapes[0]))
    return first if len(shapes) == 1 else f"{first} (+{len(shapes) - 1} shapes)"


def _gate_lines(model: Int8Model) -> list[str]:
    gate = model.gate
    if gate is None:
        return ["    (not judged)"]
    lines = [f"    {'PASS' if gate.passed else 'FAIL'}: " + "; ".join(str(c) for c in gate.checks)]
    figures = ", ".join(f"{k} {v:.4f}" if abs(v) < 10 else f"{k} {v:.0f}" for k, v in gate.figures.items())
    lines.append(f"    figures: {figures}")
    if gate.note:
        lines.append(f"    {gate.note}")
    seconds = model.record.get("seconds", {})
    lines.append(
        f"    made: int8-{model.id}, {model.record.get('calibration_items')} calibration inputs, "
        f"quantized in {seconds.get('quantize')} s, gate in {seconds.get('gate')} s, "
        f"nncf {model.record.get('nncf')}"
    )
    return lines


Row = tuple[str, str, float, float, str]


def _ocr_rows(
    models_dir: Path, made: dict[str, Int8Model], speed: list[np.ndarray], rounds: int
) -> tuple[list[Row], list[str]]:
    """The detector and recogniser alone on their product inputs, then whole posters."""
    _, paths = _ocr_specs(models_dir)
    float_ocr = OcrEngine(models_dir, int8={})
    inputs = int8.capture_ocr_inputs(float_ocr, speed)
    core = runtime.core()
    rows: list[Row] = []
    if det := made.get("ppocr-det"):
        rate = rates(
            {
                "float": network_runner(core.read_model(paths[0]), inputs["ppocr-det"]),
                "int8": network_runner(det.read(), inputs["ppocr-det"]),
            },
            rounds,
        )
        rows.append(("ppocr-det", _shape(inputs["ppocr-det"]), rate["float"], rate["int8"], "inferences/s"))
    if rec := made.get("ppocr-rec"):
        batches = inputs["ppocr-rec"]
        lines_per_batch = sum(x.shape[0] for x in batches) / len(batches)
        rate = rates(
            {
                "float": network_runner(core.read_model(paths[2]), batches),
                "int8": network_runner(rec.read(), batches),
            },
            rounds,
        )
        rows.append(("ppocr-rec", _shape(batches), rate["float"], rate["int8"], "batches/s"))
        lines = f"{lines_per_batch:.1f} lines/batch"
        rows.append(("  (lines)", lines, *(lines_per_batch * rate[s] for s in ("float", "int8")), "lines/s"))
    if not (det and rec):
        return rows, [f"  OCR float    {float_ocr.version}"]

    product = {n: m if m.accepted else None for n, m in made.items() if n in ("ppocr-det", "ppocr-rec")}
    engines = {
        "float": float_ocr,
        "product": OcrEngine(models_dir, int8=product),
        "int8": OcrEngine(models_dir, int8={"ppocr-det": det, "ppocr-rec": rec}),
    }
    for engine in engines.values():
        engine.read(speed[0])

    def read_all(engine: OcrEngine) -> Callable[[], int]:
        return lambda: len([engine.read(rgb) for rgb in speed])

    rate = rates({name: read_all(e) for name, e in engines.items()}, max(3, rounds // 2))
    rows.append(("ocr (all INT8)", "posters, read()", rate["float"], rate["int8"], "posters/s"))
    # With no INT8 accepted the product engine *is* the float one: its ratio is the timing noise.
    label = "all float: noise floor" if not any(product.values()) else "INT8 where passed"
    rows.append(("ocr (product)", label, rate["float"], rate["product"], "posters/s"))
    versions = [f"  OCR float    {float_ocr.version}", f"  OCR product  {engines['product'].version}"]
    return rows, versions


def _embed_rows(
    models_dir: Path, model: Int8Model, images: list[np.ndarray], rounds: int
) -> tuple[list[Row], list[str]]:
    """``EfficientNetLite0Embedder.embed`` of posters in batches of 16, float vs INT8."""
    images = (images * 2)[:64]
    nets = {
        "float": EfficientNetLite0Embedder(models_dir, int8=None),
        "int8": EfficientNetLite0Embedder(models_dir, int8=model),
    }
    for net in nets.values():
        net.embed(images[:16])
    rate = rates({s: (lambda n=n: len(n.embed(images))) for s, n in nets.items()}, rounds)
    rows = [("efficientnet-lite0", "16x3x224x224", rate["float"], rate["int8"], "images/s")]
    return rows, [f"  embed float  {nets['float'].version}", f"  embed int8   {nets['int8'].version}"]


def _foreground_rows(
    models_dir: Path, model: Int8Model, speed: list[np.ndarray], rounds: int
) -> tuple[list[Row], list[str]]:
    """The foreground network alone at its run size (THROUGHPUT streams, as the estimator
    compiles it), then ``ForegroundSegmenter.predict_batch`` of whole posters (pre- and
    post-processing included)."""
    segs = {
        "float": ForegroundSegmenter(models_dir, int8=None),
        "int8": ForegroundSegmenter(models_dir, int8=model),
    }
    seg = segs["float"]
    assert seg.selection.path is not None, seg.reason
    inputs = [seg._preprocess(rgb) for rgb in speed]
    float_model = read_float(seg.spec, seg.selection.path)
    rate = rates(
        {
            "float": network_runner(float_model, inputs, perf_hint="THROUGHPUT"),
            "int8": network_runner(model.read(), inputs, perf_hint="THROUGHPUT"),
        },
        rounds,
    )
    rows = [(seg.spec.name, _shape(inputs), rate["float"], rate["int8"], "inferences/s")]
    for s in segs.values():
        s.predict_batch(speed[:2])
    rate = rates({n: (lambda s=s: len(s.predict_batch(speed))) for n, s in segs.items()}, max(3, rounds // 2))
    rows.append(("  (posters)", "predict_batch()", rate["float"], rate["int8"], "posters/s"))
    return rows, [f"  fg float     {segs['float'].version}", f"  fg int8      {segs['int8'].version}"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, default=int8.precision.GATE_POSTERS, help="gate posters (demo seed 0)"
    )
    parser.add_argument("--models-dir", type=Path, default=None, help="default: the product's models folder")
    parser.add_argument("--speed-posters", type=int, default=12, help="posters whose inputs are timed")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--force", action="store_true", help="quantize and judge again")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="only this network (repeatable; default: all)"
    )
    args = parser.parse_args()
    models_dir = (args.models_dir or default_models_dir()).expanduser().resolve()

    t0 = time.perf_counter()
    print(f"models folder {models_dir}; CPU default precision {runtime.inference_precision()}")
    print(f"gate corpus: demo seed {int8.precision.GATE_SEED}, {args.n} posters")
    posters = int8.gate_corpus(args.n)
    made = int8.prepare(
        models_dir,
        search_quality=quality,
        foreground_crop=foreground_crop,
        gate_posters=args.n,
        posters=lambda: posters,
        force=args.force,
        say=print,
        only=args.only,
    )
    print(f"prepared in {time.perf_counter() - t0:.0f} s\n")

    speed = posters.images[: args.speed_posters]
    measured: list[tuple[list[Row], list[str]]] = []
    if any(n in made for n in int8.precision.OCR_INT8):
        measured.append(_ocr_rows(models_dir, made, speed, args.rounds))
    if EFFICIENTNET in made:
        measured.append(_embed_rows(models_dir, made[EFFICIENTNET], posters.images, args.rounds))
    for name in made.keys() - {*int8.precision.OCR_INT8, EFFICIENTNET}:  # the foreground network
        measured.append(_foreground_rows(models_dir, made[name], speed, args.rounds))
    rows = [row for family, _ in measured for row in family]
    versions = [line for _, family in measured for line in family]

    print(f"{'model':<22} {'shape':<28} {'float':>9} {'int8':>9} {'ratio':>6}  unit")
    for name, shape, f, q, unit in rows:
        print(f"{name:<22} {shape:<28} {f:>9.2f} {q:>9.2f} {q / f:>5.2f}x  {unit}")
    print("\nversions:")
    print("\n".join(versions))
    print()
    print(f"gates (demo seed {int8.precision.GATE_SEED}, {args.n} posters; INT8 vs float):")
    for name, model in made.items():
        print(f"  {name}: {model.xml.parent}")
        for line in _gate_lines(model):
            print(line)
    print()
    print("what the product runs (models.precision; judged on the default demo only):")
    for choice in int8.choices(models_dir):
        print(f"  {choice.reason}")
    print(f"\ntook {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
