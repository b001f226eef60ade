"""Training on real extracted structure: the loss falls, nothing collapses, a seed repeats."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from poster_assets.defs.resources import PosterStore
from poster_assets.ssl.config import TrainConfig
from poster_assets.ssl.labels import TrainItem, data_version
from poster_assets.ssl.model import PROJ_DIM
from poster_assets.ssl.train import (
    CHECKPOINT_NAME,
    CollapseError,
    TrainResult,
    curriculum_pool,
    load_checkpoint,
    plot_losses,
    train_encoder,
)
from poster_assets_tests.ssl.conftest import SHORT_RUN

# Runs that only check bookkeeping: few steps on the first four posters (fewer to decode).
TINY = TrainConfig(seed=1, steps=3, batch_size=4, lr=0.05, image_size=64, device="cpu")


@pytest.mark.slow
def test_short_run_lowers_the_simsiam_loss_without_collapse(short_run: TrainResult) -> None:
    losses = np.array(short_run.simsiam_loss)
    assert len(losses) == SHORT_RUN.steps and np.isfinite(losses).all()
    # -cos starts near 0 for fresh heads and falls as the predictor learns to match views.
    assert losses[-5:].mean() < losses[:5].mean() - 0.03, losses
    healthy = 1 / math.sqrt(PROJ_DIM)
    assert min(short_run.output_std) > 0.5 * healthy, short_run.output_std
    assert min(short_run.embedding_std) > 0.5 / math.sqrt(128)
    assert not short_run.collapsed
    # The curriculum widened from the easiest third to every poster.
    assert short_run.pool_size[0] == 3 and short_run.pool_size[-1] == 8
    assert sorted(set(short_run.pool_size)) == [3, 6, 8]
    assert all(np.isfinite(a) or np.isnan(a) for a in short_run.aux_loss)
    total = np.array(short_run.total_loss)
    aux = np.nan_to_num(np.array(short_run.aux_loss))
    np.testing.assert_allclose(total, losses + SHORT_RUN.aux_weight * aux, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_same_seed_same_losses(ssl_items: list[TrainItem], ssl_store: PosterStore, tmp_path: Path) -> None:
    few, models_dir = ssl_items[:4], ssl_store.models_dir
    a = train_encoder(few, TINY, tmp_path / "a", models_dir=models_dir)
    b = train_encoder(few, TINY, tmp_path / "b", models_dir=models_dir)
    c = train_encoder(few, dataclasses.replace(TINY, seed=2), tmp_path / "c", models_dir=models_dir)
    assert a.total_loss == b.total_loss and a.output_std == b.output_std
    assert a.total_loss != c.total_loss
    assert a.checkpoint_path.read_bytes() == b.checkpoint_path.read_bytes()


@pytest.mark.slow
def test_collapse_guard_stops_the_run(
    ssl_items: list[TrainItem], ssl_store: PosterStore, tmp_path: Path
) -> None:
    # A threshold above the healthy std makes any run look collapsed: the guard's logic, fast.
    strict = dataclasses.replace(TINY, collapse_ratio=5.0, collapse_patience=2)
    with pytest.raises(CollapseError, match="collapsed at step 1"):
        train_encoder(ssl_items[:4], strict, tmp_path / "raise", models_dir=ssl_store.models_dir)
    assert not (tmp_path / "raise" / CHECKPOINT_NAME).exists()
    with pytest.warns(UserWarning, match="collapsed"):
        result = train_encoder(
            ssl_items[:4],
            dataclasses.replace(strict, on_collapse="warn"),
            tmp_path / "warn",
            models_dir=ssl_store.models_dir,
        )
    assert result.collapsed and len(result.total_loss) == 2
    assert result.checkpoint_path.exists()


def test_curriculum_pool_widens_by_stage() -> None:
    pools = [curriculum_pool(30, s, 90, 3, True) for s in range(90)]
    assert pools[:30] == [10] * 30 and pools[30:60] == [20] * 30 and pools[60:] == [30] * 30
    assert curriculum_pool(30, 0, 90, 3, False) == 30
    assert curriculum_pool(2, 0, 10, 3, True) == 1


@pytest.mark.slow
def test_checkpoint_reloads_with_config_and_data_version(
    short_run: TrainResult, ssl_items: list[TrainItem]
) -> None:
    path = short_run.checkpoint_path
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".tmp")] == []
    model, config, payload = load_checkpoint(path)
    assert config == SHORT_RUN
    assert payload["data_version"] == short_run.data_version == data_version(ssl_items)
    assert sorted(payload["poster_ids"]) == sorted(i.poster_id for i in ssl_items)
    x = torch.zeros(2, 3, config.image_size, config.image_size)
    with torch.no_grad():
        out = model(x)
    assert out["embedding"].shape == (2, 128) and out["placement"].shape == (2, 4)


@pytest.mark.slow
def test_plot_losses_draws_an_image(short_run: TrainResult) -> None:
    image = plot_losses(short_run)
    assert image.mode == "RGB" and image.size == (900, 340)
    assert len(set(image.getdata())) > 10  # not a blank canvas
