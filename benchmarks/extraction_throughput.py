"""Throughput of the whole per-poster extraction (decode -> OCR -> depth -> foreground -> layers).

Three measurements, each in a fresh process so timings and peak RSS do not leak between them:

- ``pipeline``: the product path. OpenVINO everywhere: PP-OCR through rapidocr's OpenVINO
  engine (recognition batched; ``OcrEngine.read_many``: a pool of one-stream engines, posters on
  threads), depth and foreground with the THROUGHPUT hint over
  ``AsyncInferQueue``s, posters in chunks; decoding of the next chunk and the depth/foreground
  batch run on worker threads while the main thread runs OCR.
- ``naive``: one poster at a time, ONNX Runtime sessions for the same ONNX files (rapidocr on
  its onnxruntime engine; plain ``InferenceSession.run`` for depth/foreground), no overlap.
- ``limit``: model-only throughput of the same networks on OpenVINO (benchmark_app style:
  THROUGHPUT hint, as many async requests as the plugin wants, random inputs of the shapes a
  poster produces), combined into posters/s.

Without the real MiDaS / U²-Netp files (offline machines) the script exports *stand-in*
networks with their input/output contracts and registers them through a user manifest in a
temporary models folder; the output says so. Pass ``--models-dir`` holding the real files to
measure those instead.

    python benchmarks/extraction_throughput.py --n 24
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

_CHUNK = 8
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


# --- corpus and models -------------------------------------------------------------------------
def _corpus(out: Path, n: int, seed: int) -> list[Path]:
    try:
        from poster_assets.demo import generate_corpus
    except ImportError:
        from poster_assets.demo.corpus import generate_corpus
    generate_corpus(out, n, seed)
    return sorted(p for p in out.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)[:n]


def _stand_in_models(models_dir: Path) -> None:
    """Export stand-in depth / foreground networks (encoder-decoder convnets of roughly the real
    models' size, random weights) and register them in ``models_dir``'s manifest."""
    import torch

    class _EncDec(torch.nn.Module):
        def __init__(self, outputs: int, squeeze: bool) -> None:
            super().__init__()
            chans = [3, 32, 64, 128, 256, 256]
            layers: list[torch.nn.Module] = []
            for a, b in zip(chans, chans[1:], strict=False):
                layers += [torch.nn.Conv2d(a, b, 3, stride=2, padding=1), torch.nn.ReLU()]
                layers += [torch.nn.Conv2d(b, b, 3, padding=1), torch.nn.ReLU()]
            self.enc = torch.nn.Sequential(*layers)
            self.dec = torch.nn.Sequential(
                torch.nn.Upsample(scale_factor=4, mode="bilinear"),
                torch.nn.Conv2d(256, 64, 3, padding=1),
                torch.nn.ReLU(),
                torch.nn.Upsample(scale_factor=8, mode="bilinear"),
                torch.nn.Conv2d(64, outputs, 3, padding=1),
            )
            self.outputs, self.squeeze = outputs, squeeze

        def forward(self, x):  # noqa: ANN001, ANN201
            y = self.dec(self.enc(x))
            if self.squeeze:
                return y[:, 0]
            y = torch.sigmoid(y)
            return tuple(y[:, i : i + 1] for i in range(self.outputs))

    entries = []
    for name, size, net, outs in (
        ("midas-small", 256, _EncDec(1, squeeze=True), ["depth"]),
        ("u2netp", 320, _EncDec(7, squeeze=False), [f"d{i}" for i in range(7)]),
    ):
        path = models_dir / f"{name}-stand-in.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net.eval(),
                (torch.zeros(1, 3, size, size),),
                str(path),
                input_names=["input"],
                output_names=outs,
                dynamo=False,
            )
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        entries.append({"name": name, "version": "stand-in", "source": f"file:{path.name}", "sha256": sha})
    (models_dir / "manifest.json").write_text(json.dumps({"model": entries}))


def _decode(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _layers(depth: np.ndarray, rgb: np.ndarray) -> object | None:
    try:
        from poster_assets.vision.layers import split_layers
    except ImportError:
        return None
    return split_layers(depth, rgb)


# --- the three modes (each runs in its own process) --------------------------------------------
def run_pipeline(files: list[Path], models_dir: Path) -> dict:
    from poster_assets.models.depth import DepthEstimator
    from poster_assets.models.foreground import ForegroundSegmenter
    from poster_assets.models.ocr import OcrEngine

    t_init = time.perf_counter()
    ocr, depth, fg = OcrEngine(models_dir), DepthEstimator(models_dir), ForegroundSegmenter(models_dir)
    ocr.read_many([np.zeros((64, 64, 3), np.uint8)] * 2)  # compiles read_many's engine pool
    init_s = time.perf_counter() - t_init
    lines, layers_s = 0, 0.0
    chunks = [files[i : i + _CHUNK] for i in range(0, len(files), _CHUNK)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        decoded = pool.submit(lambda c: [_decode(p) for p in c], chunks[0])
        for k in range(len(chunks)):
            images = decoded.result()
            if k + 1 < len(chunks):
                decoded = pool.submit(lambda c: [_decode(p) for p in c], chunks[k + 1])
            # Neural depth/foreground do not need the OCR boxes, so they overlap OCR.
            maps = pool.submit(lambda ims: (depth.predict_batch(ims), fg.predict_batch(ims)), images)
            items = ocr.read_many(images)
            lines += sum(len(i) for i in items)
            depths, _fgs = maps.result()
            t_layers = time.perf_counter()
            for d, img in zip(depths, images, strict=True):
                _layers(d, img)
            layers_s += time.perf_counter() - t_layers
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "layers_s": layers_s,
        "init_s": init_s,
        "lines_per_poster": lines / len(files),
        "versions": [ocr.version, depth.version, fg.version],
    }


def run_naive(files: list[Path], models_dir: Path) -> dict:
    import onnxruntime as ort
    from rapidocr import EngineType, RapidOCR

    from poster_assets.models.depth import DepthEstimator
    from poster_assets.models.foreground import ForegroundSegmenter
    from poster_assets.models.registry import get_spec
    from poster_assets.models.weights import resolve_path

    paths = [
        str(resolve_path(get_spec(n, models_dir), models_dir))
        for n in ("ppocr-det", "ppocr-cls", "ppocr-rec")
    ]
    rapid = RapidOCR(
        params={
            "Global.log_level": "warning",
            "Det.engine_type": EngineType.ONNXRUNTIME,
            "Det.model_path": paths[0],
            "Cls.model_path": paths[1],
            "Rec.model_path": paths[2],
        }
    )
    # Same pre/post-processing code as the product; only the inference call is ORT, one image.
    depth, fg = DepthEstimator(models_dir), ForegroundSegmenter(models_dir)
    sessions = {
        e: ort.InferenceSession(str(resolve_path(e.spec, models_dir)), providers=["CPUExecutionProvider"])
        for e in (depth, fg)
    }

    def infer(est, img: np.ndarray) -> np.ndarray:  # noqa: ANN001
        s = sessions[est]
        out = s.run(None, {s.get_inputs()[0].name: est._preprocess(img)})[est.spec.output.index]
        return est._postprocess(out, *img.shape[:2])

    layers_s, t0 = 0.0, time.perf_counter()
    for p in files:
        img = _decode(p)
        rapid(np.ascontiguousarray(img[..., ::-1]))
        d = infer(depth, img)
        infer(fg, img)
        t_layers = time.perf_counter()
        _layers(d, img)
        layers_s += time.perf_counter() - t_layers
    return {"wall_s": time.perf_counter() - t0, "layers_s": layers_s}


def run_limit(files: list[Path], models_dir: Path, lines_per_poster: float) -> dict:
    import openvino as ov

    from poster_assets.models import runtime
    from poster_assets.models.registry import get_spec
    from poster_assets.models.weights import resolve_path

    h, w = _decode(files[0]).shape[:2]
    scale = 736 / min(h, w)  # rapidocr's det resize: short side to 736, multiples of 32
    det_hw = (int(round(h * scale / 32)) * 32, int(round(w * scale / 32)) * 32)
    batch = max(1, int(round(lines_per_poster)))
    # (model, input shape, inferences per poster)
    work = [
        ("ppocr-det", (1, 3, *det_hw), 1.0),
        ("ppocr-cls", (batch, 3, 48, 192), 1.0),
        ("ppocr-rec", (batch, 3, 48, 320), 1.0),
        ("midas-small", (1, 3, 256, 256), 1.0),
        ("u2netp", (1, 3, 320, 320), 1.0),
    ]
    seconds_per_poster, detail = 0.0, {}
    for name, shape, per_poster in work:
        path = resolve_path(get_spec(name, models_dir), models_dir)
        model = runtime.core().read_model(str(path))
        if any(d.is_dynamic for d in model.input(0).get_partial_shape()):
            model.reshape({0: ov.PartialShape(list(shape))})
        compiled = runtime.compile_model(model, hint="THROUGHPUT")
        queue = ov.AsyncInferQueue(compiled)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        for _ in range(len(queue)):  # warm-up
            queue.start_async({0: x})
        queue.wait_all()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 3.0:
            queue.start_async({0: x})
            n += 1
        queue.wait_all()
        per_s = n / (time.perf_counter() - t0)
        detail[name] = {"shape": list(shape), "infer_per_s": round(per_s, 1), "requests": len(queue)}
        seconds_per_poster += per_poster / per_s
    return {"posters_per_s": 1.0 / seconds_per_poster, "models": detail}


def _child(args: argparse.Namespace) -> None:
    files = [Path(p) for p in json.loads(Path(args.files).read_text())]
    models_dir = Path(args.models_dir)
    if args.mode == "pipeline":
        out = run_pipeline(files, models_dir)
    elif args.mode == "naive":
        out = run_naive(files, models_dir)
    else:
        out = run_limit(files, models_dir, args.lines)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["n"] = len(files)
    print("RESULT " + json.dumps(out))


def _spawn(mode: str, files: list[Path], models_dir: Path, work: Path, lines: float = 0.0) -> dict:
    listing = work / f"{mode}-{len(files)}.json"
    listing.write_text(json.dumps([str(p) for p in files]))
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--files",
        str(listing),
        "--models-dir",
        str(models_dir),
        "--lines",
        str(lines),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{mode} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=24, help="posters in the timed corpus (memory: also 2n)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, default=None, help="holds the real MiDaS / U²-Netp files")
    parser.add_argument("--child", choices=["pipeline", "naive", "limit"], help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--lines", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        _child(args)
        return

    with tempfile.TemporaryDirectory(prefix="poster-bench-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("POSTER_ASSETS_HOME", str(work / "home"))
        models_dir = args.models_dir or work / "models"
        if args.models_dir is None:
            models_dir.mkdir(parents=True)
            _stand_in_models(models_dir)
            print(
                "depth / foreground: STAND-IN networks with the MiDaS / U²-Netp contracts (no real weights)"
            )
        files = _corpus(work / "corpus", 2 * args.n, args.seed)
        small, large = files[: args.n], files
        print(f"corpus: {len(files)} generated posters, {os.cpu_count()} CPU cores")

        _spawn("pipeline", small[: min(4, len(small))], models_dir, work)  # fill the compile cache
        pipe = _spawn("pipeline", small, models_dir, work)
        pipe_large = _spawn("pipeline", large, models_dir, work)
        naive = _spawn("naive", small, models_dir, work)
        limit = _spawn("limit", small, models_dir, work, lines=pipe["lines_per_poster"])

    pipe_rate = pipe["n"] / pipe["wall_s"]
    naive_rate = naive["n"] / naive["wall_s"]
    print(f"versions: {'; '.join(pipe['versions'])}")
    lines, init = pipe["lines_per_poster"], pipe["init_s"]
    print(f"text lines per poster: {lines:.1f}; start-up {init:.2f} s (not timed)")
    print(f"pipeline (OpenVINO, async, overlapped): {pipe_rate:6.2f} posters/s ({1000 / pipe_rate:.0f} ms)")
    print(f"naive (ORT, one at a time):             {naive_rate:6.2f} posters/s ({1000 / naive_rate:.0f} ms)")
    print(f"model-only limit (OpenVINO THROUGHPUT): {limit['posters_per_s']:6.2f} posters/s")
    for name, d in limit["models"].items():
        shape = str(d["shape"])
        print(f"    {name:12s} {shape:22s} {d['infer_per_s']:8.1f} infer/s ({d['requests']} requests)")
    print(f"pipeline / naive: {pipe_rate / naive_rate:.2f}x (target >= 3)")
    print(f"pipeline / model-only limit: {pipe_rate / limit['posters_per_s']:.2f} (target >= 0.7)")
    # split_layers (K-means + superpixels) is CPU work outside the models; show its share.
    pipe_inf = pipe["n"] / (pipe["wall_s"] - pipe["layers_s"])
    naive_inf = naive["n"] / (naive["wall_s"] - naive["layers_s"])
    print(
        f"without the layer split: pipeline {pipe_inf:.2f}, naive {naive_inf:.2f} posters/s; "
        f"{pipe_inf / naive_inf:.2f}x naive, {pipe_inf / limit['posters_per_s']:.2f} of the limit "
        f"(layers: {1000 * pipe['layers_s'] / pipe['n']:.0f} ms/poster)"
    )
    print(
        f"peak RSS: {pipe['peak_rss_mib']:.0f} MiB at n={pipe['n']}, "
        f"{pipe_large['peak_rss_mib']:.0f} MiB at n={pipe_large['n']}; "
        f"throughput {pipe_large['n'] / pipe_large['wall_s']:.2f} posters/s at n={pipe_large['n']}"
    )


if __name__ == "__main__":
    main()
