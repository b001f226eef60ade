"""The held-out comparison: split, metrics on constructed vectors, and a run on real posters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poster_assets.models.ssl_encoder import SslEmbedder
from poster_assets.ssl.config import TrainConfig
from poster_assets.ssl.evaluate import (
    EvalRow,
    default_methods,
    evaluate_embeddings,
    format_table,
    is_held_out,
    knn_genre,
    linear_probe,
    parser,
    split_items,
    train_config,
)
from poster_assets.ssl.export import export_openvino
from poster_assets.ssl.labels import TrainItem
from poster_assets.ssl.train import TrainResult


def _item(poster_id: str) -> TrainItem:
    return TrainItem(poster_id, Path("/nowhere"), "p.png", "p.png", 10, 10, None, None, None)


def test_command_line_defaults_are_the_training_defaults() -> None:
    # The same TrainConfig as Dagster's SslConfig trains with: one place for the defaults.
    assert train_config(parser().parse_args(["--out", "x"])) == TrainConfig()
    assert TrainConfig().image_size == 96
    args = parser().parse_args(["--out", "x", "--no-curriculum", "--image-size", "64", "--seed", "3"])
    assert train_config(args) == TrainConfig(curriculum=False, image_size=64, seed=3)


def test_split_is_a_pure_function_of_the_poster_id() -> None:
    items = [_item(f"{n:064x}") for n in range(40)]
    train, test = split_items(items, 0.5)
    assert {i.poster_id for i in train}.isdisjoint(i.poster_id for i in test)
    assert len(train) + len(test) == len(items) and train and test
    assert split_items(list(reversed(items)), 0.5)[1] == list(reversed(test))
    ids = [f"{n:064x}" for n in range(2000)]
    share = np.mean([is_held_out(i, 0.3) for i in ids])
    assert 0.25 < share < 0.35
    assert not any(is_held_out(i, 0.0) for i in ids) and all(is_held_out(i, 1.0) for i in ids)


def _clusters(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, list[str]]:
    centres = np.eye(3, 8)
    labels = [("a", "b", "c")[i % 3] for i in range(n)]
    x = np.stack([centres[i % 3] for i in range(n)]) + noise * rng.normal(size=(n, 8))
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def test_knn_and_probe_score_clean_clusters_perfectly_and_noise_near_chance() -> None:
    rng = np.random.default_rng(0)
    a, la = _clusters(rng, 30, 0.05)
    b, lb = _clusters(rng, 12, 0.05)
    assert knn_genre(a, la, b, lb, k=5) == (1.0, 1.0)
    assert linear_probe(a, la, b, lb) == 1.0
    noise = rng.normal(size=(12, 8))
    acc, p10 = knn_genre(a, la, noise / np.linalg.norm(noise, axis=1, keepdims=True), lb)
    assert p10 < 0.7
    # One class in training: the probe predicts it.
    assert linear_probe(a, ["a"] * 30, b, lb) == np.mean([x == "a" for x in lb])


@pytest.mark.slow
def test_evaluate_on_real_posters(
    ssl_items: list[TrainItem], short_run: TrainResult, run_dir: Path, tmp_path: Path
) -> None:
    train, test = split_items(ssl_items, 0.5)
    ir = export_openvino(short_run.checkpoint_path, run_dir / "ir")
    methods = default_methods(SslEmbedder(ir, cache_dir=str(tmp_path / "ov_cache")), imagenet=False)
    rows = evaluate_embeddings(train, test, methods)
    assert [(r.method, r.input) for r in rows] == [
        ("ssl", "subject"), ("ssl", "poster"), ("pixels", "subject"), ("pixels", "poster"), ("majority", "-"),
    ]  # fmt: skip
    assert {r.dim for r in rows} == {128, 768, 0}
    for r in rows:
        assert 0.0 <= r.knn_genre_acc <= 1.0 and 0.0 <= r.precision_at_10 <= 1.0
        assert 0.0 <= r.placement_probe_acc <= 1.0
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "| ssl | subject | 128 |" in table
    assert isinstance(rows[0], EvalRow)
