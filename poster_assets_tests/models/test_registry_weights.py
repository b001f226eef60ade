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
        registry.UnknownModelError,
        match="known models: efficientnet-lite0, isnet-general-medium, isnet-general-small, midas-small",
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


# --- models converted here (OpenVINO IR folders) and the sha256 recorded when they were written ---

_TINY = 8  # input side of the tiny stand-in IR


def _tiny_ir(folder: Path, seed: int = 0, record: bool = True) -> Path:
    """A small IR shaped like an exported SSL encoder (pixels -> 128-d, the runtime info
    ``SslEmbedder`` reads), written the way the project writes IRs: one folder renamed into
    place, with ``sha256.json`` unless ``record`` is false."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    from poster_assets.models.artifacts import record_hashes
    from poster_assets.models.ssl_encoder import IR_NAME, RT_SECTION
    from poster_assets.storage.files import atomic_dir

    x = ops.parameter([-1, 3, _TINY, _TINY], np.float32, name="pixels")
    flat = ops.reshape(x, ops.constant(np.array([-1, 3 * _TINY * _TINY], np.int64)), special_zero=False)
    weights = np.random.default_rng(seed).standard_normal((3 * _TINY * _TINY, 128)).astype(np.float32)
    model = ov.Model([ops.matmul(flat, ops.constant(weights), False, False)], [x], "tiny")
    info = {
        "model": "ssl-encoder",
        "checkpoint_sha256": "ab" * 32,
        "image_size": str(_TINY),
        "data_version": "d",
    }
    for key, value in info.items():
        model.set_rt_info(value, [RT_SECTION, key])
    with atomic_dir(folder) as tmp:
        ov.save_model(model, tmp / IR_NAME, compress_to_fp16=False)
        if record:
            record_hashes(tmp, source={"test": seed})
    return folder / IR_NAME


def _swap_weights(xml: Path, seed: int) -> None:
    """Replace ``model.bin`` by other weights of the same size, leaving ``sha256.json`` alone."""
    other = _tiny_ir(xml.parent.with_name(f"{xml.parent.name}-other{seed}"), seed=seed)
    data = other.with_suffix(".bin").read_bytes()
    assert len(data) == xml.with_suffix(".bin").stat().st_size
    xml.with_suffix(".bin").write_bytes(data)


def test_converted_models_are_verified_against_the_sha256_recorded_when_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from poster_assets.cli import main
    from poster_assets.models.artifacts import RECORD, verify_converted

    models = tmp_path / "home" / "models"
    effnet = _tiny_ir(models / "efficientnet_lite0" / "579344248a93")
    _tiny_ir(models / "ssl" / "ssl_encoder_0123456789ab")
    assert (effnet.parent / RECORD).is_file()
    monkeypatch.setenv("POSTER_ASSETS_HOME", str(tmp_path / "home"))

    statuses = {s.path.relative_to(models).as_posix(): s for s in verify_converted(models)}
    assert set(statuses) == {"efficientnet_lite0/579344248a93", "ssl/ssl_encoder_0123456789ab"}
    assert all(s.state == "ok" for s in statuses.values())
    out = CliRunner().invoke(main, ["models", "verify"])
    assert out.exit_code == 0, out.output
    assert "efficientnet_lite0/579344248a93" in out.output

    _swap_weights(effnet, seed=1)  # the weights changed; nothing else did
    status = {s.path.name: s for s in verify_converted(models)}["579344248a93"]
    assert status.state == "changed"
    assert "model.bin has sha256" in status.reason and "converted again" in status.reason
    out = CliRunner().invoke(main, ["models", "verify"])
    assert out.exit_code == 1
    assert "changed" in out.output and "do not match the sha256 recorded" in out.output
    out = CliRunner().invoke(main, ["models", "list"])
    assert out.exit_code == 0 and "changed" in out.output

    # An IR written before records were kept is reported, not failed.
    (models / "ssl" / "ssl_encoder_0123456789ab" / RECORD).unlink()
    status = {s.path.name: s for s in verify_converted(models)}["ssl_encoder_0123456789ab"]
    assert status.state == "unrecorded" and "train-encoder" in status.reason


def test_the_ssl_encoder_runs_only_the_bytes_recorded_at_export(tmp_path: Path) -> None:
    import numpy as np

    from poster_assets.models.artifacts import RECORD, ArtifactChangedError, record_hashes
    from poster_assets.models.ssl_encoder import SslEmbedder

    xml = _tiny_ir(tmp_path / "ssl" / "ssl_encoder_0123456789ab")
    cache = str(tmp_path / "ov_cache")  # shared by every embedder below, as in a home
    images = [np.random.default_rng(i).integers(0, 256, (20, 14, 3), dtype=np.uint8) for i in range(4)]
    before = SslEmbedder(xml, cache_dir=cache).embed(images)

    _swap_weights(xml, seed=1)
    with pytest.raises(ArtifactChangedError, match="model.bin"):
        SslEmbedder(xml, cache_dir=cache)

    # Bytes that do match a record (a re-export at the same path): the compile cache must not
    # answer with the network compiled from the old bytes (OpenVINO keys a cached blob of a model
    # compiled from a path by the path alone).
    record_hashes(xml.parent)
    after = SslEmbedder(xml, cache_dir=cache).embed(images)
    fresh = SslEmbedder(xml, cache_dir=str(tmp_path / "empty_cache")).embed(images)
    np.testing.assert_allclose(after, fresh, atol=1e-6)
    assert np.abs(after - before).max() > 0.1

    (xml.parent / RECORD).unlink()  # exported before records were kept: used, with a warning
    np.testing.assert_allclose(SslEmbedder(xml, cache_dir=cache).embed(images), fresh, atol=1e-6)
