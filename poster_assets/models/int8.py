"""Making and judging the product's INT8 networks: PP-OCR det and rec, EfficientNet-Lite0 and
the foreground network in use (IS-Net). ``poster-assets models quantize`` runs ``prepare``.

``prepare(models_dir, search_quality=..., foreground_crop=...)`` does it all once (minutes on
2 cores): it generates the calibration posters (demo seed 1) and the gate corpus (the default
demo, seed 0, 200 posters), quantizes each network with NNCF through ``quantize.quantize_gated``
and records each gate's verdict with the network. Runners then use INT8 only where the gate
passed (``precision``); a second ``prepare`` finds every folder made and does nothing.

The gates run the product's own code: OCR through ``OcrEngine`` and the title the layers use
(``vision.title.title_box``), scored like ``extract.evaluate`` (exact match after whitespace
normalisation, mean per-poster CER from ``vision.metrics``); embeddings through
``EfficientNetLite0Embedder``, scored with ``search.quality``. ``models`` sits below
``search`` and ``embed`` in the package's layers, so the caller hands their functions in:
``search_quality=poster_assets.search.quality`` (required for EfficientNet) and
``foreground_crop=poster_assets.embed.kinds.foreground_crop`` (the foreground kind's view;
without it only whole posters are judged).

A foreground (or depth) network gets the same with one call, ``prepare_dense(spec, load_float,
preprocess, to_mask, ...)``, judged by the IoU of its INT8 and float masks, and looked up with
``precision.dense_choice`` (``DenseEstimator`` does); ``prepare_foreground`` makes the one of
the foreground network in use, and ``prepare`` includes it. Depth has no gate of its own yet:
its INT8 network would be loaded the same way, but none is made.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import openvino as ov
from PIL import Image

from poster_assets.demo import generate_corpus, load_ground_truth, plan_poster, render_poster
from poster_assets.models import precision, runtime
from poster_assets.models.dense import int8_variant, read_float
from poster_assets.models.depth import DepthEstimator
from poster_assets.models.efficientnet_lite import MODEL_NAME as EFFICIENTNET
from poster_assets.models.efficientnet_lite import (
    EfficientNetLite0Embedder,
    _weights,
    load_ir,
)
from poster_assets.models.efficientnet_lite import (
    preprocess as embed_preprocess,
)
from poster_assets.models.foreground import ForegroundSegmenter
from poster_assets.models.ocr import OcrEngine, _ocr_specs
from poster_assets.models.quantize import (
    Check,
    GateResult,
    Int8Choice,
    Int8Model,
    choose,
    delta_check,
    mask_iou_gate,
    neighbour_recall,
    network_runner,
    quantize_gated,
    speed_check,
)
from poster_assets.models.registry import ModelSpec
from poster_assets.models.weights import ModelUnavailableError
from poster_assets.storage.codecs import MASK_THRESHOLD
from poster_assets.vision.metrics import character_error_rate
from poster_assets.vision.title import title_box

log = logging.getLogger(__name__)

Say = Callable[[str], None]


class SearchQuality(Protocol):
    """What the embedding gate needs from ``poster_assets.search.quality`` (pass the module)."""

    def genre_precision_at_k(
        self, vectors: np.ndarray, genres: Sequence[Collection[str]], k: int = 10
    ) -> float: ...

    def near_duplicate_recall(
        self, embed: Callable[[list[np.ndarray]], np.ndarray], images: Sequence[np.ndarray]
    ) -> dict[str, float]: ...


CropFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class DemoPosters:
    """Posters with what the gates score them against."""

    images: list[np.ndarray]
    titles: list[str]
    genres: list[tuple[str, ...]]
    foreground: list[np.ndarray]  # bool HxW

    def __len__(self) -> int:
        return len(self.images)


def gate_corpus(n: int = precision.GATE_POSTERS, seed: int = precision.GATE_SEED) -> DemoPosters:
    """The demo corpus as ``poster-assets demo`` makes it (files written and read back, JPEG
    and PNG as ingested), the first ``n`` by file name. Call it under ``if __name__ ==
    "__main__"`` in a script: the generator draws posters in spawned processes."""
    with tempfile.TemporaryDirectory(prefix="int8-gate-") as tmp:
        generate_corpus(Path(tmp), n=n, seed=seed)
        truth = sorted(load_ground_truth(Path(tmp)).values(), key=lambda g: g.file)[:n]
        images = []
        for gt in truth:
            with Image.open(gt.path) as im:
                images.append(np.asarray(im.convert("RGB")))
        genres = [tuple(gt.extra.get("genres") or (gt.genre,)) for gt in truth]
        return DemoPosters(
            images, [gt.title for gt in truth], genres, [gt.foreground_mask_array() for gt in truth]
        )


def calibration_posters(n: int, seed: int = precision.CALIBRATION_SEED) -> DemoPosters:
    """``n`` posters drawn by the demo generator from the calibration seed (in memory)."""
    drawn = [render_poster(plan_poster(seed, i)) for i in range(1, n + 1)]
    return DemoPosters(
        [r.image for r in drawn],
        [" ".join(r.title_lines) for r in drawn],
        [r.plan.genres for r in drawn],
        [r.foreground_mask for r in drawn],
    )


# OCR ------------------------------------------------------------------------------------------


@dataclass
class TitleScores:
    exact: float
    cer: float
    read: list[str] = field(default_factory=list)


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def title_scores(engine: OcrEngine, posters: DemoPosters) -> TitleScores:
    """The product's title of each poster (``vision.title.title_box`` over the OCR lines, as the
    title layer stores it) against the truth: exact-match rate and mean CER, as
    ``extract.evaluate`` scores them."""
    read = []
    for rgb, items in zip(posters.images, engine.read_many(posters.images), strict=True):
        choice = title_box([(i.box, i.text, i.confidence) for i in items], rgb.shape)
        read.append(choice.text if choice else "")
    exact = float(np.mean([_same(r, t) for r, t in zip(read, posters.titles, strict=True)]))
    cer = float(np.mean([character_error_rate(r, t) for r, t in zip(read, posters.titles, strict=True)]))
    return TitleScores(exact, cer, read)


def capture_ocr_inputs(engine: OcrEngine, images: Sequence[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The detector's and recogniser's inputs exactly as the product feeds them (rapidocr's
    resizing, normalisation and line batches), recorded while ``engine`` reads ``images``."""
    captured: dict[str, list[np.ndarray]] = {"ppocr-det": [], "ppocr-rec": []}

    class _Recorder:
        def __init__(self, inner: Any, into: list[np.ndarray]) -> None:
            self._inner, self._into = inner, into

        def __call__(self, x: np.ndarray) -> Any:
            self._into.append(np.array(x, np.float32))
            return self._inner(x)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    rapid, lock = engine._single()
    det, rec = rapid.text_det.session, rapid.text_rec.session
    with lock:
        rapid.text_det.session = _Recorder(det, captured["ppocr-det"])
        rapid.text_rec.session = _Recorder(rec, captured["ppocr-rec"])
        try:
            for rgb in images:
                engine._run(rapid, np.ascontiguousarray(rgb[..., ::-1]))
        finally:
            rapid.text_det.session, rapid.text_rec.session = det, rec
    return captured


def _ocr_gate(
    models_dir: Path | None,
    name: str,
    float_path: str,
    reference: Callable[[], TitleScores],
    timing_inputs: Callable[[], dict[str, list[np.ndarray]]],
    posters: Callable[[], DemoPosters],
    others: Mapping[str, Int8Model | None],
) -> Callable[[Int8Model], GateResult]:
    def gate(candidate: Int8Model) -> GateResult:
        engine = OcrEngine(models_dir, int8={**others, name: candidate})
        try:
            got = title_scores(engine, posters())
        finally:
            engine.release()
        ref = reference()
        changed = sum(a != b for a, b in zip(ref.read, got.read, strict=True))
        # The network alone, on its inputs from the first gate posters, compiled as rapidocr
        # compiles it (LATENCY, the CPU's precision).
        timed = timing_inputs()[name]
        speed, speed_figures = speed_check(
            network_runner(runtime.core().read_model(float_path), timed),
            network_runner(candidate.read(), timed),
            precision.MIN_SPEEDUP,
        )
        return GateResult(
            (
                delta_check("title_exact_match", ref.exact, got.exact, ">=", -precision.OCR_MAX_EXACT_DROP),
                delta_check("title_cer", ref.cer, got.cer, "<=", precision.OCR_MAX_CER_RISE),
                speed,
            ),
            {
                "float_title_exact_match": ref.exact,
                "int8_title_exact_match": got.exact,
                "float_title_cer": ref.cer,
                "int8_title_cer": got.cer,
                "titles_read_differently": float(changed),
                "posters": float(len(got.read)),
                **speed_figures,
            },
            note="with "
            + (", ".join(f"{n} INT8 {m.id}" for n, m in others.items() if m) or "the others float"),
        )

    return gate


def _lazy(make: Callable[[], Any]) -> Callable[[], Any]:
    cache: list[Any] = []

    def get() -> Any:
        if not cache:
            cache.append(make())
        return cache[0]

    return get


def prepare_ocr(
    models_dir: Path | None = None,
    gate_posters: int = precision.GATE_POSTERS,
    posters: Callable[[], DemoPosters] | None = None,
    force: bool = False,
    say: Say = log.info,
    only: Collection[str] = precision.OCR_INT8,
) -> dict[str, Int8Model]:
    """Make and judge the INT8 detector, then the INT8 recogniser behind the detector the product
    will use; both gates compare with the all-float pipeline. Returns each network made (see
    ``.accepted``). Nothing is computed for a network whose folder is already there.
    ``posters``: the gate corpus when the caller has it already (``gate_corpus(gate_posters)``);
    ``only``: the networks to make (the recogniser alone is judged behind the detector the
    product chooses now)."""
    specs, paths = _ocr_specs(models_dir)
    prec = runtime.inference_precision()
    corpus = _lazy(posters or (lambda: gate_corpus(gate_posters)))
    core = runtime.core()

    def float_scores() -> TitleScores:
        say("OCR gate: reading the gate corpus with the float models")
        engine = OcrEngine(models_dir, int8={})
        return title_scores(engine, corpus())

    reference = _lazy(float_scores)

    def calibration() -> dict[str, list[np.ndarray]]:
        n = precision.OCR_CALIBRATION_POSTERS
        say(f"OCR calibration: {n} posters of seed {precision.CALIBRATION_SEED}")
        images = calibration_posters(n).images
        return capture_ocr_inputs(OcrEngine(models_dir, int8={}), images)

    inputs = _lazy(calibration)
    timing = _lazy(
        lambda: capture_ocr_inputs(OcrEngine(models_dir, int8={}), corpus().images[: precision.TIMED_POSTERS])
    )
    by_name = {s.name: s for s in specs}
    made: dict[str, Int8Model] = {}
    det_plan = precision.ocr_plan("ppocr-det", specs, prec, gate_posters=gate_posters)
    if "ppocr-det" in only:
        say(f"ppocr-det: INT8 plan {det_plan.folder(models_dir)}")
        made["ppocr-det"] = quantize_gated(
            det_plan,
            lambda: core.read_model(paths[0]),
            lambda: inputs()["ppocr-det"],
            _ocr_gate(models_dir, "ppocr-det", paths[0], reference, timing, corpus, {}),
            models_dir,
            force,
        )
        det_choice = Int8Choice(det_plan, made["ppocr-det"] if made["ppocr-det"].accepted else None, "")
    else:
        det_choice = choose(det_plan, models_dir)
    if "ppocr-rec" not in only:
        return made
    det_version = precision.chosen_version(det_choice, by_name["ppocr-det"])
    rec_plan = precision.ocr_plan("ppocr-rec", specs, prec, det_version, gate_posters)
    say(f"ppocr-rec: INT8 plan {rec_plan.folder(models_dir)} (behind {det_version})")
    others = {"ppocr-det": det_choice.model}
    made["ppocr-rec"] = quantize_gated(
        rec_plan,
        lambda: core.read_model(paths[2]),
        lambda: inputs()["ppocr-rec"],
        _ocr_gate(models_dir, "ppocr-rec", paths[2], reference, timing, corpus, others),
        models_dir,
        force,
    )
    return made


# EfficientNet-Lite0 ---------------------------------------------------------------------------


def embedding_views(posters: DemoPosters, foreground_crop: CropFn | None) -> dict[str, list[np.ndarray]]:
    """What each embedding kind feeds the network: the whole poster, and the subject crop
    (from the true foreground mask, so the gate measures the network, not a segmenter)."""
    views = {"poster": posters.images}
    if foreground_crop is not None:
        views["foreground"] = [
            foreground_crop(rgb, mask.astype(np.float32))
            for rgb, mask in zip(posters.images, posters.foreground, strict=True)
        ]
    return views


def _embed_gate(
    models_dir: Path | None,
    posters: Callable[[], DemoPosters],
    foreground_crop: CropFn | None,
    quality: SearchQuality,
) -> Callable[[Int8Model], GateResult]:
    k = precision.EMBED_K
    limit = precision.EMBED_MAX_QUALITY_DROP

    def gate(candidate: Int8Model) -> GateResult:
        corpus = posters()
        views = embedding_views(corpus, foreground_crop)
        nets = {"float": EfficientNetLite0Embedder(models_dir, int8=None)}
        nets["int8"] = EfficientNetLite0Embedder(models_dir, int8=candidate)
        checks: list[Check] = []
        figures: dict[str, float] = {"posters": float(len(corpus.images))}
        for kind, images in views.items():
            vectors = {side: net.embed(images) for side, net in nets.items()}
            recall = neighbour_recall(vectors["float"], vectors["int8"], k)
            checks.append(Check(f"{kind}_recall@{k}_int8_vs_float", recall, ">=", precision.EMBED_MIN_RECALL))
            figures[f"{kind}_recall@{k}"] = recall
            genre = {side: quality.genre_precision_at_k(v, corpus.genres, k) for side, v in vectors.items()}
            checks.append(delta_check(f"{kind}_genre_p@{k}", genre["float"], genre["int8"], ">=", -limit))
            figures |= {f"{side}_{kind}_genre_p@{k}": v for side, v in genre.items()}
        # Near-duplicate recall embeds altered copies of the whole poster, as a search query does.
        dup = {
            side: quality.near_duplicate_recall(net.embed, corpus.images)["all"] for side, net in nets.items()
        }
        checks.append(delta_check("poster_dup@1", dup["float"], dup["int8"], ">=", -limit))
        figures |= {f"{side}_poster_dup@1": v for side, v in dup.items()}
        # As the product embeds: batches of 16 on the THROUGHPUT streams.
        timed = corpus.images[: 4 * precision.TIMED_POSTERS]
        speed, speed_figures = speed_check(
            lambda: len(nets["float"].embed(timed)),
            lambda: len(nets["int8"].embed(timed)),
            precision.MIN_SPEEDUP,
        )
        checks.append(speed)
        figures |= speed_figures
        return GateResult(tuple(checks), figures)

    return gate


def prepare_efficientnet(
    models_dir: Path | None = None,
    search_quality: SearchQuality | None = None,
    foreground_crop: CropFn | None = None,
    gate_posters: int = precision.GATE_POSTERS,
    posters: Callable[[], DemoPosters] | None = None,
    force: bool = False,
    say: Say = log.info,
) -> Int8Model:
    """Make and judge the INT8 EfficientNet-Lite0 (``search_quality``: the
    ``poster_assets.search.quality`` module; ``foreground_crop``: ``embed.kinds.foreground_crop``)."""
    if search_quality is None:
        raise ValueError("EfficientNet's gate needs search_quality=poster_assets.search.quality")
    spec, _ = _weights(models_dir)
    plan = precision.efficientnet_plan(spec, gate_posters)
    say(f"efficientnet-lite0: INT8 plan {plan.folder(models_dir)}")

    def calibration() -> list[np.ndarray]:
        n = precision.EMBED_CALIBRATION_POSTERS
        say(f"EfficientNet calibration: {n} posters of seed {precision.CALIBRATION_SEED}")
        views = embedding_views(calibration_posters(n), foreground_crop)
        return [embed_preprocess([im]) for images in views.values() for im in images]

    return quantize_gated(
        plan,
        lambda: load_ir(models_dir),
        calibration,
        _embed_gate(
            models_dir, _lazy(posters or (lambda: gate_corpus(gate_posters))), foreground_crop, search_quality
        ),
        models_dir,
        force,
    )


def prepare(
    models_dir: Path | None = None,
    search_quality: SearchQuality | None = None,
    foreground_crop: CropFn | None = None,
    gate_posters: int = precision.GATE_POSTERS,
    posters: Callable[[], DemoPosters] | None = None,
    force: bool = False,
    say: Say = log.info,
    only: Collection[str] | None = None,
) -> dict[str, Int8Model]:
    """Every INT8 network of the product (``networks``), or the ones in ``only``, made and
    judged once; the gate corpus is generated once for all of them. EfficientNet is skipped
    (with a message) without ``search_quality``. The product uses networks judged on
    ``precision.GATE_POSTERS`` posters only."""
    known = networks(models_dir)
    wanted = set(known if only is None else only)
    if unknown := wanted - set(known):
        raise ValueError(f"no INT8 network {', '.join(sorted(unknown))}; these are made: {', '.join(known)}")
    posters = _lazy(posters or (lambda: gate_corpus(gate_posters)))
    made: dict[str, Int8Model] = {}
    if ocr := [n for n in precision.OCR_INT8 if n in wanted]:
        made |= prepare_ocr(models_dir, gate_posters, posters, force, say, ocr)
    if EFFICIENTNET in wanted and search_quality is None:
        say(f"{EFFICIENTNET}: skipped (its gate needs search_quality=poster_assets.search.quality)")
    elif EFFICIENTNET in wanted:
        made[EFFICIENTNET] = prepare_efficientnet(
            models_dir, search_quality, foreground_crop, gate_posters, posters, force, say
        )
    foreground = ForegroundSegmenter.select(models_dir)
    if foreground.neural and foreground.spec.name in wanted:
        made[foreground.spec.name] = prepare_foreground(models_dir, gate_posters, posters, force, say)
    return made


def networks(models_dir: Path | None = None) -> list[str]:
    """The networks ``prepare`` makes, in order: PP-OCR det and rec, EfficientNet-Lite0, and the
    foreground network in use when one is (not the classical fallback)."""
    foreground = ForegroundSegmenter.select(models_dir)
    return [*precision.OCR_INT8, EFFICIENTNET, *([foreground.spec.name] if foreground.neural else [])]


def choices(models_dir: Path | None = None, gate_posters: int = precision.GATE_POSTERS) -> list[Int8Choice]:
    """What each runner will use and why (for ``models list`` and the benchmark): PP-OCR det and
    rec, EfficientNet-Lite0, and the depth and foreground networks in use."""
    specs, _ = _ocr_specs(models_dir)
    spec, _ = _weights(models_dir)
    running = [DepthEstimator.select(models_dir), ForegroundSegmenter.select(models_dir)]
    return [
        *precision.ocr_choices(specs, models_dir, gate_posters=gate_posters).values(),
        precision.efficientnet_choice(spec, models_dir, gate_posters),
        *(
            precision.dense_choice(s.spec, s.precision, models_dir, int8_variant(s.spec), gate_posters)
            for s in running
            if s.neural
        ),
    ]


# Image-to-map networks (foreground, depth) ----------------------------------------------------


def prepare_dense(
    spec: ModelSpec,
    load_float: Callable[[], ov.Model],
    preprocess: Callable[[np.ndarray], np.ndarray],
    to_mask: Callable[[np.ndarray], np.ndarray],
    models_dir: Path | None = None,
    hint: str | None = None,
    variant: str | None = None,
    gate_posters: int = precision.GATE_POSTERS,
    posters: Callable[[], DemoPosters] | None = None,
    force: bool = False,
    say: Say = log.info,
    min_speedup: float | None = precision.MIN_SPEEDUP,
) -> Int8Model:
    """Make and judge (once) the INT8 network of a foreground model: calibrated on
    ``DENSE_CALIBRATION_POSTERS`` demo posters through ``preprocess`` (RGB uint8 -> the
    network's input), accepted where the mean IoU of INT8 and float masks (``to_mask``: raw
    output -> probability map, cut at ``MASK_THRESHOLD``) over the gate corpus is >= 0.95.
    ``hint``: the estimator's ``INFERENCE_PRECISION_HINT`` (None: the CPU's default);
    ``variant``: as in ``precision.dense_plan`` (None: the run size, as ``DenseEstimator``
    looks it up); ``min_speedup``: INT8 must be that much faster than float too (None:
    accuracy alone). Look it up with ``precision.dense_choice``; ``prepare_foreground`` calls
    this for the product's foreground network."""
    prec = runtime.inference_precision(hint=hint)
    variant = int8_variant(spec) if variant is None else variant
    plan = precision.dense_plan(spec, prec, variant, gate_posters, min_speedup=min_speedup)
    say(f"{spec.name}: INT8 plan {plan.folder(models_dir)}")
    corpus = _lazy(posters or (lambda: gate_corpus(gate_posters)))

    def calibration() -> list[np.ndarray]:
        return [preprocess(rgb) for rgb in calibration_posters(precision.DENSE_CALIBRATION_POSTERS).images]

    def gate(candidate: Int8Model) -> GateResult:
        inputs = [preprocess(rgb) for rgb in corpus().images]
        # Timed as ``DenseEstimator`` runs it: THROUGHPUT streams over an AsyncInferQueue.
        judge = mask_iou_gate(
            load_float(),
            inputs,
            to_mask,
            precision.DENSE_MIN_IOU,
            hint,
            spec.output.index,
            MASK_THRESHOLD,
            min_speedup,
        )
        return judge(candidate)

    return quantize_gated(plan, load_float, calibration, gate, models_dir, force)


def prepare_foreground(
    models_dir: Path | None = None,
    gate_posters: int = precision.GATE_POSTERS,
    posters: Callable[[], DemoPosters] | None = None,
    force: bool = False,
    say: Say = log.info,
) -> Int8Model:
    """Make and judge the INT8 network of the foreground model the product runs (IS-Net at its
    run size, fed and read exactly as ``ForegroundSegmenter`` does, at the CPU's precision).
    ``ModelUnavailableError`` when the classical fallback runs."""
    segmenter = ForegroundSegmenter(models_dir, int8=None)
    path = segmenter.selection.path
    if path is None:
        raise ModelUnavailableError(f"no foreground network to quantize ({segmenter.reason})")
    spec = segmenter.spec
    return prepare_dense(
        spec,
        lambda: read_float(spec, path),
        segmenter._preprocess,
        lambda raw: segmenter._postprocess(raw, raw.shape[-2], raw.shape[-1]),
        models_dir,
        gate_posters=gate_posters,
        posters=posters,
        force=force,
        say=say,
    )
