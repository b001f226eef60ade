"""Which precision each of the product's networks runs in: float at the CPU's precision, or an
INT8 network where its gate passed on the demo corpus.

This module holds the *plans* (``quantize.Int8Plan``) of the INT8 networks the product may use
(PP-OCR det and rec, EfficientNet-Lite0, the foreground network at its run size) and answers,
without compiling or quantizing anything, which one a runner must load (``ocr_choices``,
``efficientnet_choice``, ``dense_choice``). The plans fix the recipe, the calibration set and the
gate, so a runner and ``int8.prepare`` (``poster-assets models quantize``, which makes and
judges the networks) agree on the folder to look in; change any of them here and the product
runs float until the INT8 network is made and judged again.

Gates (measured by ``models.int8`` on the default demo corpus, ``--n 200 --seed 0``):

- OCR, per model: the product's title (``vision.title``) exact-match rate may drop by at most
  0.01 and its mean CER rise by at most 0.005 against the float pipeline. The detector is
  judged behind the float recogniser; the recogniser behind the detector the product uses.
- EfficientNet-Lite0: recall@10 of INT8 vs float neighbours >= 0.95, and genre precision@10
  and near-duplicate recall@1 (``search.quality``) within 0.01 of float.
- Foreground networks (``dense_plan``): mean IoU of INT8 and float masks >= 0.95.
- Every one: INT8 at least as fast as the float network at the product's precision
  (``quantize.MIN_SPEEDUP``); on CPUs with fast bf16 an INT8 network can be slower.

"Within" is one-sided: INT8 may not be worse by more than the margin; being better is fine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from poster_assets.models import runtime
from poster_assets.models.quantize import DEFAULT_RECIPE, MIN_SPEEDUP, Int8Choice, Int8Plan, choose
from poster_assets.models.registry import ModelSpec
from poster_assets.models.weights import model_version

# The gates' corpus: the default demo (`poster-assets demo`), generated afresh from its seed.
GATE_SEED = 0
GATE_POSTERS = 200
# Calibration posters come from another seed, so no gate poster is seen while calibrating.
CALIBRATION_SEED = 1
OCR_CALIBRATION_POSTERS = 40
EMBED_CALIBRATION_POSTERS = 100

OCR_INT8 = ("ppocr-det", "ppocr-rec")
OCR_MAX_EXACT_DROP = 0.01
OCR_MAX_CER_RISE = 0.005
EMBED_MIN_RECALL = 0.95
EMBED_K = 10
EMBED_MAX_QUALITY_DROP = 0.01
# Speed is timed on the networks' inputs from this many gate posters (4x for EfficientNet).
TIMED_POSTERS = 8


def _corpus(posters: int) -> str:
    return f"demo-seed{GATE_SEED}-n{posters}"


def ocr_gate_id(posters: int = GATE_POSTERS) -> str:
    """What the OCR gates measure, their thresholds and corpus (part of each plan's key)."""
    return (
        f"ocr-title-v1:exact>=-{OCR_MAX_EXACT_DROP},cer<=+{OCR_MAX_CER_RISE},"
        f"speedup>={MIN_SPEEDUP}:{_corpus(posters)}"
    )


def embed_gate_id(posters: int = GATE_POSTERS) -> str:
    return (
        f"embed-v1:recall@{EMBED_K}>={EMBED_MIN_RECALL},genre-p@{EMBED_K}>=-{EMBED_MAX_QUALITY_DROP},"
        f"dup@1>=-{EMBED_MAX_QUALITY_DROP},speedup>={MIN_SPEEDUP}:poster+fg-crop:{_corpus(posters)}"
    )


# Calibration inputs are the networks' own inputs as the product feeds them (captured from a
# float OCR run; letterboxed posters and subject crops for EfficientNet).
_OCR_CALIBRATION = f"demo-seed{CALIBRATION_SEED}-n{OCR_CALIBRATION_POSTERS}"
OCR_RECIPES: Mapping[str, Mapping[str, object]] = {
    "ppocr-det": {**DEFAULT_RECIPE, "calibration": f"ocr-det-inputs:{_OCR_CALIBRATION}"},
    # The recogniser is an SVTR (attention, LayerNorm, GELU): NNCF's default recipe reads almost
    # nothing right on the demo (argmax agreement with f32 0.76); its transformer recipe 0.99.
    "ppocr-rec": {
        **DEFAULT_RECIPE,
        "model_type": "transformer",
        "calibration": f"ocr-rec-batches:{_OCR_CALIBRATION}",
    },
}
# Measured on the gate corpus (recall@10 of INT8 vs f32 neighbours; bf16 itself: 0.950): NNCF's
# defaults 0.863, full bias correction 0.915, + mixed preset and the first and last two
# convolutions in float 0.946; accuracy-controlled quantization did not get further.
EMBED_RECIPE: Mapping[str, object] = {
    **DEFAULT_RECIPE,
    "preset": "mixed",
    "fast_bias_correction": False,
    "float_ends": 2,
    "calibration": f"poster+fg-crop:demo-seed{CALIBRATION_SEED}-n{EMBED_CALIBRATION_POSTERS}",
}
# EfficientNet runs in f32 on every CPU (see ``EfficientNetLite0Embedder``); INT8 keeps that
# for its float parts.
EMBED_PRECISION = "f32"


def float_version(spec: ModelSpec, precision: str) -> str:
    return model_version(spec) + runtime.precision_suffix(precision)


def chosen_version(choice: Int8Choice, spec: ModelSpec) -> str:
    """The version a choice computes with: the float model's, or the INT8 network's."""
    int8 = choice.model.id if choice.model else None
    return model_version(spec) + runtime.precision_suffix(choice.plan.precision, int8)


def ocr_plan(
    name: str,
    specs: Sequence[ModelSpec],
    precision: str,
    det_version: str | None = None,
    gate_posters: int = GATE_POSTERS,
) -> Int8Plan:
    """The plan of ``ppocr-det`` or ``ppocr-rec``. ``specs``: the three OCR specs (det, cls,
    rec); ``det_version``: for the recogniser, the version of the detector it is judged behind
    (``chosen_version`` of the detector's choice; default: the float detector). The product
    uses plans judged on ``GATE_POSTERS`` posters; other sizes are for quick benchmark runs."""
    by_name = {s.name: s for s in specs}
    if name == "ppocr-det":
        context = {n: float_version(by_name[n], precision) for n in ("ppocr-cls", "ppocr-rec")}
    elif name == "ppocr-rec":
        context = {
            "ppocr-det": det_version or float_version(by_name["ppocr-det"], precision),
            "ppocr-cls": float_version(by_name["ppocr-cls"], precision),
        }
    else:
        raise ValueError(f"{name!r} has no OCR INT8 plan; these do: {OCR_INT8}")
    return Int8Plan(
        name=name,
        float_version=model_version(by_name[name]),
        precision=precision,
        gate=ocr_gate_id(gate_posters),
        recipe=dict(OCR_RECIPES[name]),
        context=context,
    )


def ocr_choices(
    specs: Sequence[ModelSpec],
    models_dir: Path | None = None,
    precision: str | None = None,
    gate_posters: int = GATE_POSTERS,
) -> dict[str, Int8Choice]:
    """The INT8 choice of the detector, then of the recogniser behind it (``precision``: what
    rapidocr's engines compute in, default the CPU's)."""
    precision = precision or runtime.inference_precision()
    by_name = {s.name: s for s in specs}
    det = choose(ocr_plan("ppocr-det", specs, precision, gate_posters=gate_posters), models_dir)
    det_version = chosen_version(det, by_name["ppocr-det"])
    rec_plan = ocr_plan("ppocr-rec", specs, precision, det_version, gate_posters)
    return {"ppocr-det": det, "ppocr-rec": choose(rec_plan, models_dir)}


def efficientnet_plan(spec: ModelSpec, gate_posters: int = GATE_POSTERS) -> Int8Plan:
    return Int8Plan(
        name=spec.name,
        float_version=model_version(spec),
        precision=EMBED_PRECISION,
        gate=embed_gate_id(gate_posters),
        recipe=dict(EMBED_RECIPE),
    )


def efficientnet_choice(
    spec: ModelSpec, models_dir: Path | None = None, gate_posters: int = GATE_POSTERS
) -> Int8Choice:
    return choose(efficientnet_plan(spec, gate_posters), models_dir)


# Image-to-map networks (foreground; depth alike) ------------------------------------------------

# INT8 foreground masks must match the float ones: mean IoU over the gate corpus.
DENSE_MIN_IOU = 0.95
DENSE_CALIBRATION_POSTERS = 32


def dense_gate_id(
    posters: int = GATE_POSTERS, min_iou: float = DENSE_MIN_IOU, min_speedup: float | None = MIN_SPEEDUP
) -> str:
    speed = f",speedup>={min_speedup}" if min_speedup is not None else ""
    return f"mask-iou-v1:int8-vs-float>={min_iou}{speed}:{_corpus(posters)}"


def dense_plan(
    spec: ModelSpec,
    precision: str,
    variant: str = "",
    gate_posters: int = GATE_POSTERS,
    min_iou: float = DENSE_MIN_IOU,
    min_speedup: float | None = MIN_SPEEDUP,
) -> Int8Plan:
    """The INT8 plan of a foreground (or depth) network. ``precision``: what the estimator
    compiles its float parts in (``runtime.inference_precision(hint=...)``); ``variant``: what
    else fixes the graph and its inputs, e.g. ``"512"`` for IS-Net rewritten to 512²."""
    return Int8Plan(
        name=spec.name,
        float_version=model_version(spec),
        precision=precision,
        gate=dense_gate_id(gate_posters, min_iou, min_speedup),
        recipe={
            **DEFAULT_RECIPE,
            "calibration": f"posters:demo-seed{CALIBRATION_SEED}-n{DENSE_CALIBRATION_POSTERS}",
            "variant": variant,
        },
    )


def dense_choice(
    spec: ModelSpec,
    precision: str,
    models_dir: Path | None = None,
    variant: str = "",
    gate_posters: int = GATE_POSTERS,
    min_speedup: float | None = MIN_SPEEDUP,
) -> Int8Choice:
    return choose(dense_plan(spec, precision, variant, gate_posters, min_speedup=min_speedup), models_dir)
