"""Throughput of the product's per-poster extraction, where each poster's milliseconds go, and how
far it is from what the networks alone allow.

    python benchmarks/extraction_throughput.py --n 16 --models-dir poster_data/models

Every measurement runs in a fresh process (timings and peak RSS do not leak between them):

- ``profile``: one poster at a time through the product's code, each step timed: decode
  (``load_rgb``, as the extractors load a poster), PP-OCR (``OcrEngine``: each network's
  inference; the rest is rapidocr's and our pre/post-processing), depth and foreground
  (``DepthEstimator`` / ``ForegroundSegmenter``: the heuristic fallback for depth, IS-Net at its
  run size when ``--models-dir`` holds it; inference vs pre/post-processing), the writes
  (``extract.rows``: rows and PNG blobs; ``runner.write_chunk``: the DuckDB transaction, here
  one per poster where the pass has one per chunk), the read-back of the stored depth and mask
  (as ``layer_masks`` reads them) and the fused layers (``vision.fusion``).
- ``pipeline``: the product's pass over a batch (``extract.pipeline.extract_batch``, what the
  extractors run): chunks of posters, each decoded once, OCR (``read_many``: a pool of engines)
  beside the depth and foreground networks, the layers from those results in memory, one
  transaction per chunk. The posters are ingested first (not timed) and the runners built and
  warmed (not timed). Run at ``--n`` and at 4x ``--n`` posters: peak RSS at both says whether
  memory is flat in corpus size; the pass's own per-chunk timings say where its time went.
- ``naive``: one poster at a time, every network on ONNX Runtime (rapidocr's onnxruntime engine on
  the float ONNX files, IS-Net's ONNX at its run size), the same CPU steps, nothing overlapped.
- ``limit``: the networks alone on OpenVINO (THROUGHPUT hint, as many async requests as the
  plugin wants), replaying the inputs the pipeline fed them (the detector at the product's size,
  recognition at the real line widths and buckets, IS-Net as the product compiled it), one
  network after another: model seconds per poster, hence posters/s.
- ``startup``: OCR start-up (the engine and ``read_many``'s pool) with rapidocr's own OpenVINO
  sessions (a Core and a compile per network), then through the project's compile cache, cold
  (empty cache) and warm (a second process).

``--models-dir`` is only read: its files are linked into a temporary folder, which takes the
compile cache and other caches.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
_LIMIT_SECONDS = 2.0  # replay each network's recorded inputs for at least this long
_CHILD_TIMEOUT_S = int(os.environ.get("BENCH_CHILD_TIMEOUT_S", "1800"))  # a stuck child fails the run


# --- setting up ----------------------------------------------------------------------------------
def _corpus(out: Path, n: int, seed: int, source: Path | None) -> list[Path]:
    if source is None:
        from poster_assets.demo import generate_corpus

        generate_corpus(out, n, seed)
        source = out
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if len(files) < n:
        raise SystemExit(f"{source} holds {len(files)} posters, {n} asked for")
    return files[:n]


def _staged_models_dir(source: Path | None, work: Path) -> Path:
    """A models folder whose files link to ``source``'s (the product writes caches into the
    models folder it is given; ``source`` stays untouched)."""
    from poster_assets.models.quantize import INT8_DIR

    staged = work / "models"
    staged.mkdir(parents=True, exist_ok=True)
    for path in Path(source).iterdir() if source else ():
        # The INT8 networks and their verdicts too: the product runs one where its gate passed.
        if (path.is_file() or path.name == INT8_DIR) and not path.name.startswith("."):
            (staged / path.name).symlink_to(path.resolve())
    return staged


@dataclass
class Runners:
    """The product's store, a batch of the posters, and its runners (the models hub's)."""

    store: Any
    batch: str
    ocr: Any
    depth: Any
    fg: Any
    versions: dict[str, str]

    @property
    def refs(self) -> list[Any]:
        from poster_assets.extract.runner import batch_posters

        return batch_posters(self.store.db, self.batch)


def _setup(files: list[Path], models_dir: Path, home: Path) -> Runners:
    """A fresh home holding ``files`` ingested as one batch, and warm runners (not timed)."""
    import shutil

    from poster_assets.extract.versions import current_versions
    from poster_assets.ingest.batches import plan_batch
    from poster_assets.ingest.ingest import ingest_batch
    from poster_assets.models.hub import Models
    from poster_assets.storage.store import HomeStore

    folder = home / "incoming"
    folder.mkdir(parents=True)
    for path in files:
        shutil.copyfile(path, folder / path.name)
    store = HomeStore(home_path=home)
    manifest, _ = plan_batch(store.batches_dir, folder)
    ingest_batch(store.db, store.blobs, manifest)
    models = Models(models_dir)
    ocr = models.ocr()
    ocr.read_many([np.zeros((64, 64, 3), np.uint8)] * 2)  # builds read_many's engine pool
    current = current_versions(models)
    versions = {"ocr": current.ocr, "depth": current.depth, "foreground": current.foreground}
    versions["layers"] = current.layers
    return Runners(store, manifest.batch, ocr, models.depth(), models.foreground(), versions)


# --- one poster's steps, as the product does them --------------------------------------------------
def _decode(run: Runners, ref: Any) -> np.ndarray:
    from poster_assets.extract.runner import load_rgb

    return load_rgb(run.store.blobs, ref)


def _ocr_triples(items: Sequence[Any]) -> list[tuple[list[int], str, float]]:
    return [(i.box, i.text, i.confidence) for i in items]


def _map_rows(run: Runners, ref: Any, items: Sequence[Any], depth: np.ndarray, fg: np.ndarray) -> dict:
    """The ocr_text, depth_maps and foreground_masks rows (and blob files) of one poster."""
    from poster_assets.extract import rows

    v = run.versions
    return {
        "ocr_text": rows.ocr_rows(ref, items, v["ocr"]),
        "depth_maps": rows.depth_rows(ref, depth, v["depth"], run.store.blobs),
        "foreground_masks": rows.foreground_rows(ref, fg, v["foreground"], run.store.blobs),
    }


def _read_back(run: Runners, written: dict) -> tuple[np.ndarray, np.ndarray]:
    """Depth and foreground as ``layer_masks`` reads them: from the stored PNGs."""
    from poster_assets.storage.codecs import decode_depth, decode_mask

    depth_path = written["depth_maps"]["depth_maps"][0]["depth_path"]
    mask_path = written["foreground_masks"]["foreground_masks"][0]["mask_path"]
    blobs = run.store.blobs
    return decode_depth(blobs.abspath(depth_path)), decode_mask(blobs.abspath(mask_path))


def _layer_rows(run: Runners, ref: Any, rgb: np.ndarray, depth, fg, triples) -> dict:  # noqa: ANN001
    from poster_assets.extract import rows

    layers, title = rows.compute_layers(rgb, depth, fg, triples)
    return rows.layer_rows(ref, layers, title, run.versions, run.store.blobs)


def _commit(run: Runners, ref: Any, per_asset: dict) -> None:
    """A poster's rows of every extractor in one transaction, as the pass writes a chunk."""
    from poster_assets.extract.runner import Outcome, write_chunk

    names = {
        "ocr_text": "ocr",
        "depth_maps": "depth",
        "foreground_masks": "foreground",
        "layer_masks": "layers",
    }
    results = [(a, run.versions[names[a]], [Outcome(ref.poster_id, rows)]) for a, rows in per_asset.items()]
    write_chunk(run.store.db, run.batch, results)


# --- profile: one poster at a time, every step timed -------------------------------------------------
@dataclass
class Stopwatch:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - t0


def run_profile(files: list[Path], models_dir: Path, home: Path) -> dict:
    from poster_assets.models.ocr import profile_inference

    run = _setup(files, models_dir, home)
    refs = run.refs
    one_poster(run, refs[0], Stopwatch())  # warm-up: first-inference allocations, lazy imports
    watch = Stopwatch()
    with profile_inference() as inferences:
        for ref in refs:
            one_poster(run, ref, watch)
    ms = {k: 1000 * v / len(refs) for k, v in watch.seconds.items()}
    for name in ("ppocr-det", "ppocr-cls", "ppocr-rec"):
        ms[f"ocr {name[6:]} infer"] = 1000 * inferences.seconds(name) / len(refs)
    ms["ocr pre/post"] = ms.pop("ocr") - sum(ms[f"ocr {m} infer"] for m in ("det", "cls", "rec"))
    fg_pre_post = ms.pop("foreground pre/post")
    ms["foreground infer"] = ms.pop("foreground") - fg_pre_post
    ms["foreground pre/post"] = fg_pre_post
    return {"ms": ms, "neural": {"depth": run.depth.neural, "foreground": run.fg.neural}}


def one_poster(run: Runners, ref: Any, watch: Stopwatch) -> None:
    with watch.time("decode"):
        rgb = _decode(run, ref)
    with watch.time("ocr"):
        items = run.ocr.read(rgb)
    with watch.time("depth"):
        depth = run.depth.predict(rgb)
    with watch.time("foreground"):
        fg = run.fg.predict(rgb)
    with watch.time("foreground pre/post"):  # the hooks again, alone: what is not the network
        if run.fg.neural:
            run.fg._postprocess(run.fg._preprocess(rgb)[0, :1], *rgb.shape[:2])
    with watch.time("writes: blobs"):
        written = _map_rows(run, ref, items, depth, fg)
    with watch.time("read-back"):
        stored_depth, stored_fg = _read_back(run, written)
    with watch.time("layers"):
        layer_rows = _layer_rows(run, ref, rgb, stored_depth, stored_fg, _ocr_triples(items))
    with watch.time("writes: database"):
        _commit(run, ref, {**written, "layer_masks": layer_rows})


# --- pipeline: the product's pass ---------------------------------------------------------------------
def run_pipeline(files: list[Path], models_dir: Path, home: Path) -> dict:
    from poster_assets.extract.pipeline import extract_batch
    from poster_assets.extract.versions import current_versions
    from poster_assets.models.hub import Models
    from poster_assets.models.ocr import profile_inference

    t_init = time.perf_counter()
    run = _setup(files, models_dir, home)
    init_s = time.perf_counter() - t_init
    setup_rss = _peak_rss_mib()
    _reset_peak_rss()  # the peak of the pass alone, not of the ingest before it
    models = Models(models_dir)
    stages: dict[str, float] = defaultdict(float)

    def progress(done: int, total: int, seconds: dict[str, float]) -> None:
        for stage, s in seconds.items():
            stages[stage] += s

    t0 = time.perf_counter()
    with profile_inference() as inferences:
        result = extract_batch(run.store, models, run.batch, current_versions(models), progress=progress)
    wall = time.perf_counter() - t0
    failed = {a: s.failed for a, s in result.stats.items() if s.failed}
    if failed or result.unavailable:
        raise RuntimeError(f"the pass failed posters: {failed} {result.unavailable}")
    lines = run.store.db.query("SELECT count(*) FROM ocr_text")[0][0]
    calls = [[name, list(shape), n, s] for (name, shape), (n, s) in inferences.calls.items()]
    return {
        "wall_s": wall,
        "init_s": init_s,
        "lines_per_poster": lines / len(files),
        "versions": run.versions,
        "calls": calls,
        "stage_ms": {k: 1000 * v / len(files) for k, v in stages.items()},
        "pass_peak_rss_mib": _peak_rss_mib(),
        "setup_peak_rss_mib": setup_rss,
    }


def _reset_peak_rss() -> None:
    """Restart the process's peak resident set size (Linux's VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- naive: ONNX Runtime, one poster at a time ------------------------------------------------------
def run_naive(files: list[Path], models_dir: Path, home: Path) -> dict:
    from poster_assets.models.ocr import _items

    run = _setup(files, models_dir, home)
    rapid = _ort_rapidocr(models_dir)
    fg_net = _ort_foreground(run.fg, models_dir, home) if run.fg.neural else None

    def foreground(rgb: np.ndarray) -> np.ndarray:
        if fg_net is None:
            return run.fg.predict(rgb)
        outputs = fg_net.run(None, {fg_net.get_inputs()[0].name: run.fg._preprocess(rgb)})
        raw = np.asarray(outputs[run.fg.spec.output.index], np.float32)
        return run.fg._postprocess(raw, *rgb.shape[:2])

    t0 = time.perf_counter()
    for ref in run.refs:
        rgb = _decode(run, ref)
        items = _items(rapid(np.ascontiguousarray(rgb[..., ::-1])))
        written = _map_rows(run, ref, items, run.depth.predict(rgb), foreground(rgb))
        stored_depth, stored_fg = _read_back(run, written)
        layer_rows = _layer_rows(run, ref, rgb, stored_depth, stored_fg, _ocr_triples(items))
        _commit(run, ref, {**written, "layer_masks": layer_rows})
    return {"wall_s": time.perf_counter() - t0}


def _ort_rapidocr(models_dir: Path) -> Any:
    """rapidocr as it comes, on its onnxruntime engine, with the float ONNX files."""
    from rapidocr import EngineType, RapidOCR

    from poster_assets.models.ocr import _ocr_specs

    det, cls, rec = _ocr_specs(models_dir)[1]
    engine = {f"{m}.engine_type": EngineType.ONNXRUNTIME for m in ("Det", "Cls", "Rec")}
    paths = {"Det.model_path": det, "Cls.model_path": cls, "Rec.model_path": rec}
    return RapidOCR(params={"Global.log_level": "warning", **engine, **paths})


def _ort_foreground(fg: Any, models_dir: Path, work: Path) -> Any:
    """An ONNX Runtime session of the foreground network at the product's run size (its
    constant-size resizes rewritten to scales, as the product does before reshaping)."""
    import onnx
    import onnxruntime as ort

    from poster_assets.models.weights import resolve_path

    path = resolve_path(fg.spec, models_dir)
    if fg.spec.input.run_size is not None:
        from poster_assets.models.onnx_resize import constant_resizes_to_scales

        rewritten, _ = constant_resizes_to_scales(onnx.load(str(path)))
        path = work / "foreground-scales.onnx"
        onnx.save(rewritten, str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# --- limit: the networks alone ------------------------------------------------------------------------
def run_limit(files: list[Path], models_dir: Path, home: Path, calls: list) -> dict:
    """Model seconds per poster of each network on its recorded inputs (``calls`` from the
    pipeline: model, input shape, count over ``files``), THROUGHPUT hint, async requests."""
    from poster_assets.models import runtime
    from poster_assets.models.foreground import ForegroundSegmenter
    from poster_assets.models.ocr import OCR_MODELS, OcrEngine

    ocr_paths = dict(zip(OCR_MODELS, OcrEngine(models_dir).paths, strict=True))
    workload: dict[str, list[tuple[tuple[int, ...], int]]] = defaultdict(list)
    for name, shape, n, _ in calls:
        workload[name].append((tuple(shape), int(n)))
    fg = ForegroundSegmenter(models_dir)
    networks: dict[str, Callable[[], Any]] = {
        name: (lambda p=ocr_paths[name]: runtime.compile_model(p, hint="THROUGHPUT")) for name in OCR_MODELS
    }
    if fg.neural:  # the network as the product compiled it (THROUGHPUT), once per poster
        networks[fg.spec.name] = lambda: fg._compiled
        workload[fg.spec.name] = [(tuple(fg._compiled.input(0).get_shape()), len(files))]
    detail = {}
    for name, compile_ in networks.items():
        seconds, requests = _replay(compile_(), workload[name])
        detail[name] = {"ms_per_poster": 1000 * seconds / len(files), "requests": requests}
    total = sum(d["ms_per_poster"] for d in detail.values()) / 1000
    return {"posters_per_s": 1.0 / total, "models": detail}


def _replay(compiled: Any, workload: list[tuple[tuple[int, ...], int]]) -> tuple[float, int]:
    """Seconds one pass of ``workload`` takes on all of ``compiled``'s requests at once."""
    import openvino as ov

    queue = ov.AsyncInferQueue(compiled)
    rng = np.random.default_rng(0)
    inputs = [(rng.standard_normal(shape).astype(np.float32), n) for shape, n in workload]

    def one_pass() -> None:
        for x, n in inputs:
            for _ in range(n):
                queue.start_async({0: x})

    one_pass()  # warm-up: shape-specific kernels
    queue.wait_all()
    passes, t0 = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - t0 < _LIMIT_SECONDS:
        one_pass()
        passes += 1
    queue.wait_all()
    return (time.perf_counter() - t0) / passes, len(queue)


# --- start-up -----------------------------------------------------------------------------------------
def run_startup(files: list[Path], models_dir: Path, home: Path, which: str) -> dict:
    """Seconds to a ready OCR (the LATENCY engine and ``read_many``'s pool) in this process,
    after the imports (rapidocr's takes 1-3 s of its own: it parses its YAML configs)."""
    t_import = time.perf_counter()
    import rapidocr.main  # noqa: F401

    import poster_assets.models.ocr  # noqa: F401

    t0 = time.perf_counter()
    if which == "rapidocr":
        _rapidocr_own_sessions(models_dir)
    else:
        from poster_assets.models.ocr import OcrEngine

        OcrEngine(models_dir).read_many([np.zeros((64, 64, 3), np.uint8)] * 2)
    return {"startup_s": time.perf_counter() - t0, "import_s": t0 - t_import}


def _rapidocr_own_sessions(models_dir: Path) -> None:
    """The engines ``OcrEngine`` builds, through rapidocr's own OpenVINO sessions (a Core per
    network, compiled without a cache): how OCR started before."""
    from rapidocr import EngineType, RapidOCR

    from poster_assets.models.ocr import _ocr_specs, pool_shape

    det, cls, rec = _ocr_specs(models_dir)[1]
    params = {f"{m}.engine_type": EngineType.OPENVINO for m in ("Det", "Cls", "Rec")}
    params |= {"Det.model_path": det, "Cls.model_path": cls, "Rec.model_path": rec}
    streams, threads = pool_shape(os.cpu_count() or 1)
    pool = [{"EngineConfig.openvino.inference_num_threads": threads}] * streams
    for extra in [{}, *pool]:
        rapid = RapidOCR(params={"Global.log_level": "warning", **params, **extra})
        rapid._load_det_model(), rapid._load_cls_model(), rapid._load_rec_model()


# --- processes --------------------------------------------------------------------------------------------
def _child(args: argparse.Namespace) -> None:
    faulthandler.dump_traceback_later(_CHILD_TIMEOUT_S - 30, exit=True)  # a hang says where
    files = [Path(p) for p in json.loads(Path(args.files).read_text())]
    models_dir, home = Path(args.models_dir), Path(os.environ["POSTER_ASSETS_HOME"])
    if args.child == "pipeline":
        out = run_pipeline(files, models_dir, home)
    elif args.child == "profile":
        out = run_profile(files, models_dir, home)
    elif args.child == "naive":
        out = run_naive(files, models_dir, home)
    elif args.child == "limit":
        out = run_limit(files, models_dir, home, json.loads(Path(args.calls).read_text()))
    else:
        out = run_startup(files, models_dir, home, args.child.removeprefix("startup-"))
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["n"] = len(files)
    print("RESULT " + json.dumps(out))


def _spawn(mode: str, files: list[Path], models_dir: Path, work: Path, calls: list | None = None) -> dict:
    """Run ``mode`` in a fresh process with a fresh home (its own database and blobs)."""
    tag = f"{mode}-{len(files)}-{time.monotonic_ns()}"
    listing, calls_file = work / f"{tag}.json", work / f"{tag}-calls.json"
    listing.write_text(json.dumps([str(p) for p in files]))
    calls_file.write_text(json.dumps(calls or []))
    env = {**os.environ, "POSTER_ASSETS_HOME": str(work / tag)}
    cmd = [sys.executable, __file__, "--child", mode, "--files", str(listing)]
    cmd += ["--models-dir", str(models_dir), "--calls", str(calls_file)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, env=env, timeout=_CHILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"{mode} ran past {_CHILD_TIMEOUT_S} s:\n{(err.stderr or b'')[-4000:]!r}") from err
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{mode} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=16, help="posters timed (memory: also 4n)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=None, help="existing posters (else generated)")
    parser.add_argument("--models-dir", type=Path, default=None, help="read-only source of pulled models")
    parser.add_argument("--profile-n", type=int, default=8, help="posters in the step-by-step profile")
    parser.add_argument("--repeat", type=int, default=1, help="runs of pipeline, naive and limit (best kept)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--calls", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = _args()
    if args.child:
        _child(args)
        return
    with tempfile.TemporaryDirectory(prefix="poster-bench-") as tmp:
        work = Path(tmp)
        files = _corpus(work / "corpus", 4 * args.n, args.seed, args.corpus)
        models_dir = _staged_models_dir(args.models_dir, work)
        source = args.corpus or f"generated, seed {args.seed}"
        print(f"corpus: {len(files)} posters ({source}), {os.cpu_count()} cores")
        results = {"startup": _startup(files, models_dir, work)}  # first: the cache is still empty
        results["profile"] = _spawn("profile", files[: args.profile_n], models_dir, work)
        results["pipeline_large"] = _spawn("pipeline", files, models_dir, work)
        results |= _timed_modes(files[: args.n], models_dir, work, args.repeat)
    report(results, args)


def _timed_modes(files: list[Path], models_dir: Path, work: Path, repeat: int) -> dict[str, dict]:
    """Pipeline, naive and limit ``repeat`` times in turn, the fastest of each kept: on a shared
    machine the others' load comes and goes, and the best run is the least disturbed."""
    runs: dict[str, list[dict]] = defaultdict(list)
    for _ in range(repeat):
        runs["pipeline"].append(_spawn("pipeline", files, models_dir, work))
        runs["naive"].append(_spawn("naive", files, models_dir, work))
        calls = runs["pipeline"][0]["calls"]
        runs["limit"].append(_spawn("limit", files, models_dir, work, calls=calls))
    best = {mode: max(rs, key=_rate) for mode, rs in runs.items()}
    for mode, rs in runs.items():
        best[mode]["all_rates"] = [_rate(r) for r in rs]
    return best


def _rate(result: dict) -> float:
    return result["posters_per_s"] if "posters_per_s" in result else result["n"] / result["wall_s"]


def _startup(files: list[Path], models_dir: Path, work: Path) -> dict[str, dict]:
    """OCR start-up: rapidocr's own sessions; ours with an empty cache; ours again (warm)."""
    order = [("rapidocr's own sessions", "startup-rapidocr"), ("compile cache, cold", "startup-ours")]
    order.append(("compile cache, warm", "startup-ours"))
    return {label: _spawn(mode, files[:1], models_dir, work) for label, mode in order}


# --- the report ------------------------------------------------------------------------------------------
def report(results: dict, args: argparse.Namespace) -> None:
    pipe, large, naive, limit = (results[k] for k in ("pipeline", "pipeline_large", "naive", "limit"))
    print("versions: " + "; ".join(f"{k} {v}" for k, v in pipe["versions"].items()))
    _report_profile(results["profile"], pipe)
    pipe_rate, naive_rate, limit_rate = _rate(pipe), _rate(naive), _rate(limit)
    print(f"\nmodel-only limit (OpenVINO THROUGHPUT, the pipeline's own inputs): {limit_rate:6.2f} posters/s")
    for name, d in limit["models"].items():
        print(f"    {name:22s} {d['ms_per_poster']:7.1f} ms/poster ({d['requests']} requests)")
    for label, rate, n in (
        ("pipeline (product code, overlapped)", pipe_rate, pipe["n"]),
        ("naive (ONNX Runtime, one at a time)", naive_rate, naive["n"]),
    ):
        print(f"{label}: {rate:6.2f} posters/s  ({1000 / rate:.0f} ms/poster, n={n})")
    runs = "; ".join(
        f"{m} " + ", ".join(f"{r:.2f}" for r in results[m]["all_rates"])
        for m in ("pipeline", "naive", "limit")
    )
    print(f"    posters/s of each run (best kept): {runs}")
    passed = ", ".join(f"{k} {v:.0f}" for k, v in pipe["stage_ms"].items())
    print(f"    the pass's own timings, ms per poster (dense runs beside ocr): {passed}")
    print(f"pipeline / naive:           {pipe_rate / naive_rate:5.2f}x (target >= 4)")
    print(f"pipeline / model-only limit: {pipe_rate / limit_rate:5.2f}  (target >= 0.7)")
    large_rate = large["n"] / large["wall_s"]
    print(
        f"peak RSS of the pass: {pipe['pass_peak_rss_mib']:.0f} MiB at n={pipe['n']}, "
        f"{large['pass_peak_rss_mib']:.0f} MiB at n={large['n']} ({large_rate:.2f} posters/s); with the "
        f"ingest and start-up before it {pipe['peak_rss_mib']:.0f} / {large['peak_rss_mib']:.0f} MiB "
        f"(start-up {pipe['init_s']:.1f} s, not timed)"
    )
    start = results["startup"]
    base = start["rapidocr's own sessions"]["startup_s"]
    print("OCR start-up in a fresh process (engine + read_many's pool, after the imports):")
    for label, r in start.items():
        took = r["startup_s"]
        print(f"    {label:26s} {took:5.2f} s ({took / base:.2f}x); imports {r['import_s']:.2f} s")


def _report_profile(profile: dict, pipe: dict) -> None:
    ms = profile["ms"]
    kinds = {k: "network" if v else "fallback" for k, v in profile["neural"].items()}
    print(
        f"\nwhere a poster's milliseconds go (one poster at a time, n={profile['n']}; depth: "
        f"{kinds['depth']}, foreground: {kinds['foreground']}):"
    )
    shapes = _shape_summary(pipe)
    order = [
        "decode",
        "ocr det infer",
        "ocr cls infer",
        "ocr rec infer",
        "ocr pre/post",
        "depth",
        "foreground infer",
        "foreground pre/post",
        "writes: blobs",
        "writes: database",
        "read-back",
        "layers",
    ]
    for stage in order:
        print(f"    {stage:22s} {ms.get(stage, 0.0):7.1f} ms   {shapes.get(stage, '')}")
    print(
        f"    {'total':22s} {sum(ms.values()):7.1f} ms;  {pipe['lines_per_poster']:.1f} text lines per poster"
    )


def _shape_summary(pipe: dict) -> dict[str, str]:
    """Inferences per poster and their input shapes, per OCR network (from the pipeline run)."""
    per: dict[str, list] = defaultdict(list)
    for name, shape, n, _ in pipe["calls"]:
        per[name].append((shape, n))
    out = {}
    for name, entries in per.items():
        calls = sum(n for _, n in entries) / pipe["n"]
        widest = max(entries, key=lambda e: e[0][-1])[0]
        out[f"ocr {name[6:]} infer"] = f"{calls:.1f} inferences/poster, e.g. {'x'.join(map(str, widest))}"
    return out


if __name__ == "__main__":
    main()
