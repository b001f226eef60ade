"""Post-training INT8 (NNCF) of a float network, used only where an accuracy gate holds.

The float model is never touched: it stays the reference the gate compares with and what runs
when INT8 is refused. An INT8 network is made once per *plan* (``Int8Plan``: which float model,
the precision its float parts compute in, the NNCF recipe, the gate and what else the gate ran
with) into its own folder

    <models>/int8/<name>/<precision>-<plan key>/
        model.xml, model.bin   the INT8 OpenVINO IR
        gate.json              the gate's verdict and figures (``GateResult``), the plan
        sha256.json            sha256 and size of the three files above (``models.artifacts``)

written in a temporary folder and renamed into place in one step, so a crash or a concurrent
maker leaves no half artefact, and the verdict is checked together with the weights: an edited
``gate.json`` fails its sha256 like an edited ``model.bin``.

Two calls are all a model family needs:

- ``quantize_gated(plan, load_float, calibration, gate, models_dir)`` once (offline, minutes):
  quantize, measure the gate on the candidate, record both; an existing verified folder of the
  same plan is returned as it is.
- ``choose(plan, models_dir)`` when a runner is built (milliseconds, no NNCF): the INT8 model
  where the plan's folder verifies and its gate passed, else None, and in words why.

The runner then names what computed its values with ``runtime.versioned(version, compiled,
int8=chosen.model.id if chosen.model else None)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
import openvino as ov

from poster_assets.models import artifacts, runtime
from poster_assets.settings import models_dir as default_models_dir
from poster_assets.storage.files import atomic_dir, atomic_write_text, file_sha256

log = logging.getLogger(__name__)

_SLACK = 1e-9
INT8_DIR = "int8"
GATE_FILE = "gate.json"
_FORMAT_VERSION = 1

# INT8 must also be at least as fast as the float network at the product's precision: on CPUs
# with fast bf16 (AMX) an INT8 network can be the slower one (measured here, not assumed).
MIN_SPEEDUP = 1.0
# NNCF's defaults, spelled out so that a change of them is a change of the plan key.
DEFAULT_RECIPE: Mapping[str, Any] = {
    "preset": "performance",
    "subset_size": 300,
    "fast_bias_correction": True,
    "model_type": None,
    "ignored_scope": None,
    # Keep the first and last N convolutions in float (resolved on the graph when quantizing,
    # so the recipe does not depend on node names a converter may change).
    "float_ends": 0,
}
_CONVOLUTIONS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData")


@dataclass(frozen=True)
class Int8Plan:
    """What an INT8 network is made from and how it is judged; ``key`` names its folder.

    ``float_version``: ``weights.model_version(spec)`` of the float weights (name, version and
    sha256). ``precision``: what the float parts compute in, as the product runs them
    (``runtime.inference_precision(hint=...)``); the gate is measured at it, so another class
    of CPU needs its own gate. ``gate``: an id of the gate's metric, thresholds and corpus.
    ``recipe``: ``nncf.quantize`` options (``DEFAULT_RECIPE`` keys) plus ``calibration``, an id
    of the calibration set. ``context``: versions of the other models the gate ran with (the
    recogniser's gate runs behind the detector the product will use)."""

    name: str
    float_version: str
    precision: str
    gate: str
    recipe: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_RECIPE))
    context: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "float_version": self.float_version,
            "precision": self.precision,
            "gate": self.gate,
            "recipe": dict(self.recipe),
            "context": dict(self.context),
        }

    @property
    def key(self) -> str:
        text = json.dumps(self.describe(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def folder(self, models_dir: Path | None = None) -> Path:
        root = Path(models_dir) if models_dir else default_models_dir()
        return root / INT8_DIR / self.name / f"{self.precision}-{self.key}"


@dataclass(frozen=True)
class Check:
    """One threshold of a gate: ``value`` (usually INT8 minus float) ``op`` ``limit``."""

    name: str
    value: float
    op: Literal[">=", "<="]
    limit: float

    @property
    def passed(self) -> bool:
        # A margin is inclusive: 0.895 - 0.905 is -0.010000000000000009 in floating point.
        slack = _SLACK * max(1.0, abs(self.limit))
        return bool(np.isfinite(self.value)) and (
            self.value >= self.limit - slack if self.op == ">=" else self.value <= self.limit + slack
        )

    def __str__(self) -> str:
        return f"{self.name} {self.value:+.4f} {self.op} {self.limit:+.4f} {'ok' if self.passed else 'FAILS'}"


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict: it passes when every check does (and there is at least one).
    ``figures``: the measurements behind the checks (float and INT8 side by side), for the
    record and the benchmark."""

    checks: tuple[Check, ...]
    figures: Mapping[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def summary(self) -> str:
        return "; ".join(str(c) for c in self.checks) or "no checks"

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [dataclasses.asdict(c) | {"passed": c.passed} for c in self.checks],
            "figures": {k: float(v) for k, v in self.figures.items()},
            "note": self.note,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> GateResult:
        checks = tuple(
            Check(str(c["name"]), float(c["value"]), c["op"], float(c["limit"])) for c in raw["checks"]
        )
        return cls(checks, {str(k): float(v) for k, v in raw.get("figures", {}).items()}, raw.get("note", ""))


@dataclass(frozen=True)
class Int8Model:
    """An INT8 IR: its ``xml``, ``id`` (sha256 of its IR files, 10 hex digits: what versions
    name) and the gate recorded with it (None on a candidate not yet judged)."""

    name: str
    xml: Path
    id: str
    gate: GateResult | None = None
    record: Mapping[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        """The gate passed, as recorded when it was measured and as its checks read now."""
        recorded = self.record.get("gate", {}).get("passed", True)
        return self.gate is not None and self.gate.passed and bool(recorded)

    def read(self, core: ov.Core | None = None) -> ov.Model:
        """The IR from bytes checked against its record (``artifacts.read_ir``); a candidate
        (no record yet) is read as it is."""
        c = core or runtime.core()
        if (self.xml.parent / artifacts.RECORD).is_file():
            return artifacts.read_ir(self.xml, c)
        return c.read_model(str(self.xml))


@dataclass(frozen=True)
class Int8Choice:
    """What ``choose`` found: ``model`` to run (None: the float one) and why."""

    plan: Int8Plan
    model: Int8Model | None
    reason: str
    gate: GateResult | None = None  # also when refused: the figures that refused it


GateFn = Callable[[Int8Model], GateResult]
Calibration = Iterable[Any] | Callable[[], Iterable[Any]]


def _ir_id(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in artifacts.IR_FILES:
        digest.update(file_sha256(folder / name, use_cache=False).encode())
    return digest.hexdigest()[:10]


def _read_gate(folder: Path) -> dict[str, Any]:
    return json.loads((folder / GATE_FILE).read_text(encoding="utf-8"))


def load(folder: Path) -> Int8Model:
    """The INT8 model in a finished folder; ``ArtifactChangedError`` when its files (gate
    included) do not match their record or the record is unreadable."""
    folder = Path(folder)
    if why := artifacts.problem(folder):
        raise artifacts.ArtifactChangedError(why)
    record = json.loads((folder / artifacts.RECORD).read_text(encoding="utf-8"))
    if GATE_FILE not in record.get("files", {}):
        raise artifacts.ArtifactChangedError(f"{folder}: {GATE_FILE} is not covered by {artifacts.RECORD}")
    try:
        raw = _read_gate(folder)
        gate = GateResult.from_json(raw["gate"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise artifacts.ArtifactChangedError(f"{folder / GATE_FILE} cannot be read ({exc})") from None
    return Int8Model(raw["plan"]["name"], folder / artifacts.IR_FILES[0], str(raw["int8_id"]), gate, raw)


def choose(plan: Int8Plan, models_dir: Path | None = None) -> Int8Choice:
    """The INT8 network to run for ``plan``, or None (run the float one), with the reason.
    Cheap: a folder lookup and sha256s cached per (path, size, mtime); never quantizes."""
    folder = plan.folder(models_dir)
    if not folder.is_dir():
        # Named by the float weights' version, which carries the run size: an INT8 network judged
        # at another size (or precision) does not count, and the reason should say so.
        why = f"{plan.name}: no INT8 made for {plan.float_version} in {plan.precision} (float in use)"
        return Int8Choice(plan, None, why)
    try:
        model = load(folder)
    except artifacts.ArtifactChangedError as exc:
        log.warning("refusing the INT8 %s: %s", plan.name, exc)
        return Int8Choice(plan, None, f"{plan.name}: INT8 refused, its files changed ({exc}); float in use")
    assert model.gate is not None
    if not model.accepted:
        why = f"{plan.name}: INT8 failed its gate ({model.gate.summary()}); float in use"
        return Int8Choice(plan, None, why, model.gate)
    return Int8Choice(plan, model, f"{plan.name}: INT8 passed its gate ({model.gate.summary()})", model.gate)


def gate_records(models_dir: Path | None = None) -> list[Path]:
    """Every ``gate.json`` under the models folder: their (path, size, mtime) tell a long-lived
    process that an INT8 choice may have changed (``hub``)."""
    root = (Path(models_dir) if models_dir else default_models_dir()) / INT8_DIR
    return sorted(root.glob(f"*/*/{GATE_FILE}")) if root.is_dir() else []


def _nncf_options(model: ov.Model, recipe: Mapping[str, Any]) -> dict[str, Any]:
    import nncf

    options: dict[str, Any] = {
        "subset_size": int(recipe.get("subset_size", DEFAULT_RECIPE["subset_size"])),
        "fast_bias_correction": bool(recipe.get("fast_bias_correction", True)),
    }
    if preset := recipe.get("preset"):
        options["preset"] = nncf.QuantizationPreset(str(preset))
    if model_type := recipe.get("model_type"):
        options["model_type"] = nncf.ModelType(str(model_type))
    scope = {k: list(v) for k, v in dict(recipe.get("ignored_scope") or {}).items()}
    if ends := int(recipe.get("float_ends") or 0):
        convs = [
            op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in _CONVOLUTIONS
        ]
        scope["names"] = [*scope.get("names", []), *convs[:ends], *convs[-ends:]]
    if scope:
        options["ignored_scope"] = nncf.IgnoredScope(**scope)
    return options


def quantize_model(
    model: ov.Model, calibration: Sequence[Any], recipe: Mapping[str, Any] = DEFAULT_RECIPE
) -> ov.Model:
    """``nncf.quantize`` of ``model`` on ``calibration`` (each item what the model's infer
    request takes: an array for one input, a dict or tuple for several), with ``recipe``."""
    import nncf

    if not calibration:
        raise ValueError("INT8 calibration needs at least one input")
    options = _nncf_options(model, recipe)
    options["subset_size"] = min(options["subset_size"], len(calibration))
    return nncf.quantize(model, nncf.Dataset(list(calibration)), **options)


def quantize_gated(
    plan: Int8Plan,
    load_float: Callable[[], ov.Model],
    calibration: Calibration,
    gate: GateFn,
    models_dir: Path | None = None,
    force: bool = False,
) -> Int8Model:
    """Make (once) the INT8 network of ``plan`` and record its gate; returns it, accepted or not
    (``.accepted``). ``load_float``: the float ``ov.Model`` (the same graph the product compiles,
    e.g. after reshaping); ``calibration``: its inputs, or a function giving them (called only
    when quantizing); ``gate``: judges a candidate against the float model (see ``agreement``,
    ``mask_iou_gate``, ``neighbour_recall_gate``). A folder of the same plan that verifies is
    returned as it is unless ``force``; one that does not is moved aside and made again."""
    folder = plan.folder(models_dir)
    if folder.exists():
        try:
            if not force:
                return load(folder)
        except artifacts.ArtifactChangedError as exc:
            log.warning("the INT8 %s at %s fails its check (%s); making it again", plan.name, folder, exc)
        artifacts.discard(folder)
    items = list(calibration() if callable(calibration) else calibration)
    with atomic_dir(folder) as tmp:
        t0 = time.perf_counter()
        quantized = quantize_model(load_float(), items, plan.recipe)
        # INT8 weights stay INT8; fp16 compression of the rest would be a third precision.
        ov.save_model(quantized, tmp / artifacts.IR_FILES[0], compress_to_fp16=False)
        seconds_quantize = time.perf_counter() - t0
        candidate = Int8Model(plan.name, tmp / artifacts.IR_FILES[0], _ir_id(tmp))
        t1 = time.perf_counter()
        result = gate(candidate)
        record = {
            "format_version": _FORMAT_VERSION,
            "plan": plan.describe(),
            "plan_key": plan.key,
            "int8_id": candidate.id,
            "gate": result.to_json(),
            "calibration_items": len(items),
            "nncf": _version("nncf"),
            "openvino": ov.__version__,
            "seconds": {"quantize": round(seconds_quantize, 1), "gate": round(time.perf_counter() - t1, 1)},
            "made_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_text(tmp / GATE_FILE, json.dumps(record, indent=2), fsync=True)
        artifacts.record_hashes(tmp, source={"int8_of": plan.float_version, "plan_key": plan.key})
        log.info("INT8 %s: %s (%s)", plan.name, "accepted" if result.passed else "refused", result.summary())
    return load(folder)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


# Generic gates --------------------------------------------------------------------------------


def delta_check(
    name: str, float_value: float, int8_value: float, op: Literal[">=", "<="], limit: float
) -> Check:
    """A check on ``int8_value - float_value``: ``>= -0.01`` (may drop by 0.01 at most),
    ``<= 0.005`` (may rise by 0.005 at most)."""
    return Check(name, float(int8_value) - float(float_value), op, limit)


def rates(sides: Mapping[str, Callable[[], int]], rounds: int = 5) -> dict[str, float]:
    """Items per second of each side (a function that does some work and returns how many
    items it did): every round runs each side once, in alternating order, and the median
    round counts, so a busy shared machine slows both sides alike."""
    per_side: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            items = sides[name]()
            per_side[name].append(items / max(time.perf_counter() - t0, 1e-9))
    return {name: float(np.median(v)) for name, v in per_side.items()}


def network_runner(
    model: ov.Model, inputs: Sequence[Any], hint: str | None = None, perf_hint: str = "LATENCY"
) -> Callable[[], int]:
    """A ``rates`` side: ``model`` compiled with ``perf_hint`` at ``hint`` precision, running
    ``inputs`` through as many infer requests as the plugin wants (one under LATENCY)."""
    config = {runtime.PRECISION_HINT: hint} if hint else {}
    compiled = runtime.compile_model(model, hint=perf_hint, **config)
    queue = ov.AsyncInferQueue(compiled)
    queue.start_async(inputs[0])  # first-inference allocations are not speed
    queue.wait_all()

    def run() -> int:
        for x in inputs:
            queue.start_async(x)
        queue.wait_all()
        return len(inputs)

    return run


def speed_check(
    float_side: Callable[[], int],
    int8_side: Callable[[], int],
    min_speedup: float = MIN_SPEEDUP,
    rounds: int = 5,
) -> tuple[Check, dict[str, float]]:
    """INT8 must be at least ``min_speedup`` times as fast as float (``rates`` sides doing the
    same work): an INT8 network no faster than the float one at the CPU's precision costs
    accuracy for nothing."""
    rate = rates({"float": float_side, "int8": int8_side}, rounds)
    speedup = rate["int8"] / rate["float"]
    figures = {"float_per_s": rate["float"], "int8_per_s": rate["int8"], "speedup": speedup}
    return Check("speedup_int8_vs_float", speedup, ">=", min_speedup), figures


def run_model(
    model: ov.Model | ov.CompiledModel,
    inputs: Sequence[Any],
    hint: str | None = None,
    output: int = 0,
) -> list[np.ndarray]:
    """Output ``output`` of ``model`` for each input, compiled at ``hint`` precision (None: the
    CPU's default): how gates run a float reference and an INT8 candidate the same way."""
    if isinstance(model, ov.CompiledModel):
        compiled = model
    else:
        config = {runtime.PRECISION_HINT: hint} if hint else {}
        compiled = runtime.compile_model(model, hint="THROUGHPUT", **config)
    request = compiled.create_infer_request()
    return [np.array(request.infer(x)[compiled.outputs[output]]) for x in inputs]


def mask_iou(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> float:
    """IoU of two probability maps cut at ``threshold`` (two empty masks agree fully)."""
    ma, mb = np.asarray(a) >= threshold, np.asarray(b) >= threshold
    union = np.count_nonzero(ma | mb)
    return 1.0 if union == 0 else float(np.count_nonzero(ma & mb) / union)


def mask_iou_gate(
    float_model: ov.Model,
    inputs: Sequence[Any],
    to_mask: Callable[[np.ndarray], np.ndarray] = lambda raw: np.squeeze(raw),
    min_iou: float = 0.95,
    hint: str | None = None,
    output: int = 0,
    threshold: float = 0.5,
    min_speedup: float | None = MIN_SPEEDUP,
    perf_hint: str = "THROUGHPUT",
) -> GateFn:
    """A gate for segmenters: mean IoU between the INT8 and float masks over ``inputs`` (network
    inputs, e.g. demo posters preprocessed) must be ``>= min_iou``. ``to_mask`` turns a raw
    output into a probability map (the product's post-processing); masks are cut at
    ``threshold``. The float outputs are computed once, when the gate is made. With
    ``min_speedup``, INT8 must also run that much faster on (up to 8 of) the inputs, compiled
    with ``perf_hint`` as the product compiles the network."""
    reference = [to_mask(r) for r in run_model(float_model, inputs, hint, output)]

    def gate(candidate: Int8Model) -> GateResult:
        int8_model = candidate.read()
        got = [to_mask(r) for r in run_model(int8_model, inputs, hint, output)]
        ious = [mask_iou(a, b, threshold) for a, b in zip(reference, got, strict=True)]
        mean = float(np.mean(ious))
        checks = [Check("mask_iou_int8_vs_float", mean, ">=", min_iou)]
        figures = {"mask_iou_mean": mean, "mask_iou_min": float(np.min(ious)), "samples": float(len(ious))}
        if min_speedup is not None:
            timed = list(inputs[:8])
            check, speed = speed_check(
                network_runner(float_model, timed, hint, perf_hint),
                network_runner(int8_model, timed, hint, perf_hint),
                min_speedup,
            )
            checks.append(check)
            figures |= speed
        return GateResult(tuple(checks), figures)

    return gate


def neighbour_recall(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float:
    """Mean over rows of the share of a row's k nearest other rows (cosine) under ``reference``
    that are also among its k nearest under ``candidate``: do the two embeddings find the same
    neighbours."""
    import faiss

    def neighbours(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        _, nn = faiss.knn(x, x, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        return np.stack([row[row != i][:k] for i, row in enumerate(nn)])

    if len(reference) != len(candidate) or len(reference) <= k:
        raise ValueError(f"need more than k={k} rows in both, got {len(reference)} and {len(candidate)}")
    a, b = neighbours(reference), neighbours(candidate)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))
