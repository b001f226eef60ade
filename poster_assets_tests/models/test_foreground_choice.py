"""Which foreground model runs: IS-Net over U²-Netp over the classical fallback, with tiny
stand-ins (same contracts) registered in a manifest; IS-Net's processing at its run size; and
what ``poster-assets demo`` and ``models list`` say about the models. No network: offline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from poster_assets.models.defaults import Fetched, fetch_defaults, in_use_line
from poster_assets.models.foreground import FOREGROUND_MODELS, ForegroundSegmenter
from poster_assets_tests.models.tiny_onnx import tiny_isnet, tiny_isnet_expected, tiny_u2netp


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTER_ASSETS_OFFLINE", "1")


def _save(model: onnx.ModelProto, path: Path) -> str:
    onnx.save(model, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Manifest entries of the tiny IS-Net (exported at 64, run at 32) under both IS-Net names,
    and of the tiny U²-Netp, by name."""
    folder = tmp_path_factory.mktemp("stand_ins")
    isnet = _save(tiny_isnet(64), folder / "isnet-tiny.onnx")
    u2 = _save(tiny_u2netp(), folder / "u2netp-tiny.onnx")
    entries = {
        name: {
            "name": name,
            "version": "tiny-32px",
            "source": f"file:{folder / 'isnet-tiny.onnx'}",
            "sha256": isnet,
            "input": {"shape": [1, 3, 64, 64], "size": [32, 32]},
            "output": {"shape": [1, 1, 64, 64]},
        }
        for name in ("isnet-general-medium", "isnet-general-small")
    }
    entries["u2netp"] = {
        "name": "u2netp",
        "version": "tiny-test",
        "source": f"file:{folder / 'u2netp-tiny.onnx'}",
        "sha256": u2,
    }
    return entries


def _models_dir(tmp_path: Path, entries: list[dict]) -> Path:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    (models / "manifest.json").write_text(json.dumps({"model": entries}))
    return models


def _poster(h: int = 90, w: int = 60) -> np.ndarray:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:] = (30, 80, 160)
    rgb[h // 3 : 2 * h // 3, w // 4 : 3 * w // 4] = (240, 150, 40)
    rgb[:, : w // 5, 0] = np.linspace(0, 250, w // 5, dtype=np.uint8)[None, :]
    return rgb


def test_isnet_is_preferred_over_u2netp(tmp_path: Path, stand_ins: dict) -> None:
    assert FOREGROUND_MODELS == ("isnet-general-medium", "isnet-general-small", "u2netp")
    models = _models_dir(tmp_path, list(stand_ins.values()))
    seg = ForegroundSegmenter(models, precision="f32")
    assert seg.neural and seg.spec.name == "isnet-general-medium"
    assert seg.version.startswith("isnet-general-medium@tiny-32px+")  # names the model and its size
    assert seg.reason == "using isnet-general-medium at 32x32: present and verified (the first choice)"

    models = _models_dir(tmp_path, [stand_ins["isnet-general-small"], stand_ins["u2netp"]])
    seg = ForegroundSegmenter(models)
    assert seg.neural and seg.version.startswith("isnet-general-small@tiny-32px+")
    assert seg.reason.startswith(
        "using isnet-general-small at 32x32: present and verified (isnet-general-medium: no file at"
    )


def test_isnet_runs_at_its_size_with_its_preprocessing(tmp_path: Path, stand_ins: dict) -> None:
    models = _models_dir(tmp_path, [stand_ins["isnet-general-medium"]])
    seg = ForegroundSegmenter(models, precision="f32")
    rgb = _poster()
    fg = seg.predict(rgb)
    # By hand: area-resized to 32x32, x / 255 - 0.5 (std 1), the network, min-max, resized back.
    x = cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0 - 0.5
    m = tiny_isnet_expected(x.transpose(2, 0, 1)[None])
    m = cv2.resize(m.astype(np.float32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    expected = (m - m.min()) / (m.max() - m.min())
    assert fg.shape == rgb.shape[:2] and fg.dtype == np.float32
    np.testing.assert_allclose(fg, expected, atol=5e-4)


def test_u2netp_runs_when_isnet_is_missing_and_says_why(tmp_path: Path, stand_ins: dict) -> None:
    models = _models_dir(tmp_path, [stand_ins["u2netp"]])
    seg = ForegroundSegmenter(models)
    assert seg.neural and seg.version.startswith("u2netp@tiny-test+")
    assert seg.reason.startswith(
        "using u2netp at 320x320: present and verified (isnet-general-medium: no file"
    )
    assert "poster-assets models pull isnet-general-medium" in seg.reason
    assert "isnet-general-small: no file" in seg.reason
    assert "fg:grabcut" not in seg.reason
    assert seg.predict(_poster()).shape == (90, 60)


def test_the_fallback_runs_when_neither_is_usable(tmp_path: Path, stand_ins: dict) -> None:
    broken = dict(stand_ins["isnet-general-medium"], sha256="0" * 64)
    seg = ForegroundSegmenter(_models_dir(tmp_path, [broken]))
    assert not seg.neural and seg.version == "fg:grabcut-saliency-v1"
    assert seg.reason.startswith("using fg:grabcut-saliency-v1: isnet-general-medium: sha256 mismatch")
    assert "isnet-general-small: no file" in seg.reason and "u2netp: no file" in seg.reason
    assert seg.predict(_poster()).shape == (90, 60)


def test_a_size_the_network_cannot_take_falls_back(tmp_path: Path) -> None:
    sha = _save(tiny_isnet(64, skip=True), tmp_path / "isnet-skip.onnx")
    entry = {
        "name": "isnet-general-medium",
        "version": "tiny-skip-31px",
        "source": f"file:{tmp_path / 'isnet-skip.onnx'}",
        "sha256": sha,
        "input": {"shape": [1, 3, 64, 64], "size": [31, 31]},  # 31 -> 15 -> 30: the skip misaligns
        "output": {"shape": [1, 1, 64, 64]},
    }
    seg = ForegroundSegmenter(_models_dir(tmp_path, [entry]), model="isnet-general-medium")
    assert not seg.neural and seg.version == "fg:grabcut-saliency-v1"
    assert "isnet-general-medium: cannot run at 31x31" in seg.reason


# --- what `poster-assets demo` and `models list` say --------------------------------------------


def test_offline_demo_pulls_nothing_and_says_why_each_extractor_falls_back(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from poster_assets.cli.ingest import _demo_models

    fetched = fetch_defaults(home / "models", offline=True)
    assert {n: f.outcome for n, f in fetched.items()} == {
        "ppocr-det": "bundled",
        "ppocr-cls": "bundled",
        "ppocr-rec": "bundled",
        "midas-small": "offline",
        "isnet-general-medium": "offline",
        "efficientnet-lite0": "bundled",
    }
    _demo_models(offline=False)  # POSTER_ASSETS_OFFLINE=1 wins
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "models (offline: nothing pulled):"
    lines = {line.split()[0]: line for line in out[1:]}
    assert set(lines) == {"ocr_text", "depth_maps", "foreground_masks", "foreground_embeddings"}
    assert "present (in the rapidocr wheel)" in lines["ocr_text"]
    assert "depth:heuristic-v1  fallback: midas-small not pulled (offline)" in lines["depth_maps"]
    assert (
        "fg:grabcut-saliency-v1  fallback: isnet-general-medium not pulled (offline)"
        in lines["foreground_masks"]
    )
    assert "efficientnet-lite0@" in lines["foreground_embeddings"]
    assert not any(p.name.endswith(".onnx") for p in (home / "models").glob("*"))


def test_in_use_lines_say_pulled_present_unreachable_and_refused() -> None:
    fetched = {
        "isnet-general-medium": Fetched("isnet-general-medium", "pulled", "pulled now (88 MB in 3 s)"),
        "midas-small": Fetched("midas-small", "unreachable", "could not reach the release URL"),
    }
    assert in_use_line("foreground_masks", "isnet-general-medium@x-640px+ab", True, fetched).endswith(
        "isnet-general-medium@x-640px+ab  pulled now (88 MB in 3 s)"
    )
    assert in_use_line("depth_maps", "depth:heuristic-v1", False, fetched).endswith(
        "fallback: midas-small unreachable (could not reach the release URL)"
    )
    present = {"isnet-general-medium": Fetched("isnet-general-medium", "present", "pulled before")}
    assert in_use_line("foreground_masks", "isnet-general-medium@x+ab", True, present).endswith(
        "isnet-general-medium@x+ab  present (pulled before)"
    )
    refused = {"isnet-general-medium": Fetched("isnet-general-medium", "refused", "sha256 differs")}
    assert in_use_line("foreground_masks", "u2netp@v+cd", True, refused).endswith(
        "u2netp@v+cd  present; isnet-general-medium refused (sha256 differs)"
    )


def test_models_list_shows_each_licence(home: Path) -> None:
    from poster_assets.cli import main

    out = CliRunner().invoke(main, ["models", "list"])
    assert out.exit_code == 0, out.output
    rows = {line.split()[0]: line for line in out.output.splitlines() if line and not line.startswith("-")}
    assert "licence" in rows["name"]
    for name in ("isnet-general-medium", "isnet-general-small"):
        assert "AGPL-3.0" in rows[name] and "fallback" in rows[name]
    assert "MIT" in rows["midas-small"] and "Apache-2.0" in rows["u2netp"]
