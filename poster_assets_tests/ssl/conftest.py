"""One small real corpus for every SSL test: 8 generated posters, ingested and run through the
four real extractors and the dbt models (``marts.ssl_labels``, where the labels come from) once
per session, and one short training run shared by the train, export and evaluate tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from poster_assets.defs.resources import PosterStore
from poster_assets.demo import generate_corpus
from poster_assets.ssl.config import TrainConfig
from poster_assets.ssl.labels import TrainItem, load_training_items
from poster_assets.ssl.train import TrainResult, train_encoder
from poster_assets_tests.extracted import extract_folder

# The loss-decrease run: fixed seed, large enough a learning rate that 20 steps show it.
SHORT_RUN = TrainConfig(seed=7, steps=20, batch_size=8, lr=0.1, image_size=80, device="cpu")


@pytest.fixture(scope="session")
def ssl_store(tmp_path_factory: pytest.TempPathFactory) -> PosterStore:
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("ssl")
    home = root / "home"
    (home / "dagster").mkdir(parents=True)
    generate_corpus(root / "corpus", n=8, seed=2)
    return extract_folder(home, root / "corpus", marts=True)


@pytest.fixture(scope="session")
def ssl_items(ssl_store: PosterStore) -> list[TrainItem]:
    return load_training_items(ssl_store)


@pytest.fixture(scope="session")
def short_run(
    ssl_items: list[TrainItem], ssl_store: PosterStore, tmp_path_factory: pytest.TempPathFactory
) -> TrainResult:
    return train_encoder(
        ssl_items, SHORT_RUN, tmp_path_factory.mktemp("ssl_run"), models_dir=ssl_store.models_dir
    )


@pytest.fixture(scope="session")
def run_dir(short_run: TrainResult) -> Path:
    return short_run.checkpoint_path.parent
