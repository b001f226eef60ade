"""The training settings, and the one place their defaults are set.

The Dagster launchpad (``defs/ssl``), offline evaluation (``python -m poster_assets.ssl.evaluate``)
and the dataset all take their defaults from ``TrainConfig``, so the model evaluated offline is
the model production trains. No torch at import: the Dagster definitions import this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    steps: int = 300
    batch_size: int = 16
    lr: float = 0.05
    # The ImageNet trunk moves slower than the new heads, so a short run keeps what it knew.
    trunk_lr_scale: float = 0.1
    image_size: int = 96  # training views and the exported IR's input, in px
    aux_weight: float = 0.3
    curriculum: bool = True
    device: str = "auto"  # "auto": cuda when available, else cpu
    stages: int = 3
    weight_decay: float = 1e-4
    # Collapse: std below this share of the healthy 1/sqrt(d) for `collapse_patience` steps.
    collapse_ratio: float = 0.1
    collapse_patience: int = 10
    on_collapse: str = "raise"  # or "warn"

    def resolved_device(self) -> str:
        if self.device == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device
