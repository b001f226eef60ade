"""The project's own structure-aware self-supervised encoder (SimSiam + structure labels).

Entry points: ``load_training_items`` (store -> items), ``train_encoder`` (items -> checkpoint),
``export_openvino`` (checkpoint -> IR), ``SslEmbedder`` (IR -> 128-d unit vectors) and
``poster_assets.ssl.evaluate`` (held-out comparison with ImageNet features and raw pixels).
"""

from poster_assets.ssl.data import PairDataset, TrainItem, data_version, load_training_items
from poster_assets.ssl.export import SslEmbedder, export_openvino
from poster_assets.ssl.train import (
    CollapseError,
    TrainConfig,
    TrainResult,
    load_checkpoint,
    plot_losses,
    train_encoder,
)

__all__ = [
    "CollapseError",
    "PairDataset",
    "SslEmbedder",
    "TrainConfig",
    "TrainItem",
    "TrainResult",
    "data_version",
    "export_openvino",
    "load_checkpoint",
    "load_training_items",
    "plot_losses",
    "train_encoder",
]
