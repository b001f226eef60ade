"""Registry entries, the user-manifest extension, status/verify and pull (against a real local
HTTP server and an unreachable port)."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from poster_assets.models import registry, weights

_WEIGHTS = b"not really weights, but bytes with a known hash" * 100


def _manifest(models_dir: Path, entries: list[dict]) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / "manifest.json").write_text(json.dumps({"model": entries}))


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving ``root``."""
    root = tmp_path / "served"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_builtin_wheel_models_verify_against_their_pinned_sha256(tmp_path: Path) -> None:
    statuses = {s.spec.name: s for s in weights.verify(tmp_path)}
    for name in ("ppocr-det", "ppocr-cls", "ppocr-rec"):
        status = statuses[name]
        assert status.state == "present", status.reason
        assert status.sha256_ok is True
        assert "rapidocr" in status.path.parts
        assert weights.model_data_version(name, tmp_path) == weights.model_version(status.spec)
    for name, fallback in (("midas-small", "depth:heuristic-v1"), ("u2netp", "fg:grabcut-saliency-v1")):
        assert statuses[name].state == "fallback"
        assert statuses[name].sha256_ok is None
        assert weights.model_data_version(name, tmp_path) == fallback


def test_model_version_names_model_version_and_hash() -> None:
    spec = registry.get_spec("midas-small")
    assert weights.model_version(spec) == "midas-small@v2.1-small-256+2d8c6cb8f415"


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(
        registry.UnknownModelError, match="known models: efficientnet-lite0, midas-small, ppocr-cls"
    ):
        registry.get_spec("midas-large")
    with pytest.raises(registry.UnknownModelError, match="registered: v2.1-small-256"):
        registry.get_spec("midas-small", version="v3")


def test_user_manifest_adds_a_version_that_becomes_active(tmp_path: Path) -> None:
    (tmp_path / "manifest.toml").write_text(
        "[[model]]\n"
        'name = "midas-small"\n'
        'version = "v2.1-small-384"\n'
        'source = "https://example.invalid/midas-384.onnx"\n'
        f'sha256 = "{"ab" * 32}"\n'
        "[model.input]\n"
        "shape = [1, 3, 384, 384]\n"
        "size = [384, 384]\n"
    )
    spec = registry.get_spec("midas-small", tmp_path)
    assert spec.version == "v2.1-small-384"
    assert spec.input.size == (384, 384) and spec.input.mean == registry.IMAGENET_MEAN  # inherited
    assert spec.fallback == "depth:heuristic-v1" and spec.task == "depth"
    assert registry.versions("midas-small", tmp_path) == ["v2.1-small-256", "v2.1-small-384"]
    assert registry.get_spec("midas-small", tmp_path, version="v2.1-small-256").input.size == (256, 256)
    assert [s.name for s in registry.list_specs(tmp_path)].count("midas-small") == 1
    # The default registry (no manifest) is unchanged.
    assert registry.get_spec("midas-small").version == "v2.1-small-256"


def test_user_manifest_registers_a_new_model(tmp_path: Path) -> None:
    _manifest(
        tmp_path,
        [
            {
                "name": "tiny-seg",
                "task": "foreground",
                "version": "1",
                "format": "onnx",
                "source": "file:tiny-seg.onnx",
                "sha256": hashlib.sha256(_WEIGHTS).hexdigest(),
                "input": {"shape": [1, 3, 64, 64], "size": [64, 64]},
                "output": {"shape": [1, 1, 64, 64]},
            }
        ],
    )
    spec = registry.get_spec("tiny-seg", tmp_path)
    assert spec.origin.endswith("manifest.json") and spec.fallback is None
    assert weights.model_status(spec, tmp_path).state == "missing"
    (tmp_path / "tiny-seg.onnx").write_bytes(_WEIGHTS)
    assert weights.model_status(spec, tmp_path).state == "present"


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"name": "midas-small", "version": "x", "source": "file:a", "sha256": "12"}, "64 hex"),
        (
            {"name": "midas-small", "version": "v2.1-small-256", "source": "file:a", "sha256": "a" * 64},
            "already",
        ),
        ({"name": "new", "version": "1", "source": "file:a", "sha256": "a" * 64}, "needs task"),
        (
            {"name": "midas-small", "version": "2", "source": "file:a", "sha256": "a" * 64, "colour": 1},
            "unknown",
        ),
    ],
)
def test_bad_manifest_entries_are_rejected(tmp_path: Path, entry: dict, message: str) -> None:
    _manifest(tmp_path, [entry])
    with pytest.raises(registry.ManifestError, match=message):
        registry.all_specs(tmp_path)


def test_wrong_file_is_reported_and_data_version_falls_back(tmp_path: Path) -> None:
    (tmp_path / "model-small.onnx").write_bytes(_WEIGHTS)
    status = weights.model_status(registry.get_spec("midas-small"), tmp_path)
    assert status.state == "fallback" and status.sha256_ok is False
    assert "sha256 mismatch" in status.reason and "depth:heuristic-v1" in status.reason
    assert weights.model_data_version("midas-small", tmp_path) == "depth:heuristic-v1"


def test_pull_unreachable_names_url_and_fallback(tmp_path: Path) -> None:
    _manifest(
        tmp_path,
        [{"name": "u2netp", "version": "offline", "source": "http://127.0.0.1:9/x.onnx", "sha256": "c" * 64}],
    )
    with pytest.raises(weights.ModelUnavailableError) as err:
        weights.pull("u2netp", timeout=5, models_dir=tmp_path)
    assert "http://127.0.0.1:9/x.onnx" in str(err.value)
    assert "fg:grabcut-saliency-v1" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temp file left


def test_pull_downloads_verifies_and_renames(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, served = http_root
    (served / "weights.onnx").write_bytes(_WEIGHTS)
    models = tmp_path / "models"
    sha = hashlib.sha256(_WEIGHTS).hexdigest()
    _manifest(
        models, [{"name": "midas-small", "version": "served", "source": f"{url}/weights.onnx", "sha256": sha}]
    )
    status = weights.pull("midas-small", timeout=10, models_dir=models)
    assert status.state == "present" and status.path == models / "weights.onnx"
    assert status.path.read_bytes() == _WEIGHTS
    assert weights.model_data_version("midas-small", models) == f"midas-small@served+{sha[:12]}"
    assert weights.pull("midas-small", timeout=10, models_dir=models).state == "present"  # no-op


def test_pull_refuses_wrong_hash_and_deletes_the_download(
    tmp_path: Path, http_root: tuple[str, Path]
) -> None:
    url, served = http_root
    (served / "weights.onnx").write_bytes(_WEIGHTS)
    models = tmp_path / "models"
    _manifest(
        models,
        [{"name": "midas-small", "version": "bad", "source": f"{url}/weights.onnx", "sha256": "d" * 64}],
    )
    with pytest.raises(weights.ModelHashError, match="depth:heuristic-v1"):
        weights.pull("midas-small", timeout=10, models_dir=models)
    assert sorted(p.name for p in models.iterdir()) == ["manifest.json"]


def test_pull_of_a_wheel_model_is_a_check(tmp_path: Path) -> None:
    assert weights.pull("ppocr-rec", models_dir=tmp_path).state == "present"
