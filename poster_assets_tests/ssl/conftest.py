"""One small real corpus for every SSL test: 8 generated posters, ingested and run through the
four real extractors once per session (the dbt models are not built, so the labels come from
the base tables), and one short training run shared by the train, export and evaluate tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from poster_assets.demo import generate_corpus
from poster_assets.ssl.data import TrainItem, load_training_items
from poster_assets.ssl.train import TrainConfig, TrainResult, train_encoder
from poster_assets.storage.resource import PosterStore
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
    store = extract_folder(home, root / "corpus")
    return store


@pytest.fixture(scope="session")
def ssl_items(ssl_store: PosterStore) -> list[TrainItem]:
    return load_training_items(ssl_store.db, ssl_store.blobs)


@pytest.fixture(scope="session")
def short_run(ssl_items: list[TrainItem], tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train_encoder(ssl_items, SHORT_RUN, tmp_path_factory.mktemp("ssl_run"))


@pytest.fixture(scope="session")
def run_dir(short_run: TrainResult) -> Path:
    return short_run.checkpoint_path.parent
