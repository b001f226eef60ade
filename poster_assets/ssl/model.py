"""The structure-aware encoder: EfficientNet-Lite0 (ImageNet start) -> 128-d embedding, with the
SimSiam projector and predictor and the auxiliary structure heads on top.

Only ``SslEncoder`` (trunk + embedding) is exported; the heads exist for training.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from poster_assets.models.efficientnet_lite import FEATURE_DIM, MODEL_NAME, torch_network
from poster_assets.models.ssl_encoder import EMBED_DIM
from poster_assets.ssl.labels import LAYER_BUCKETS, PLACEMENTS

PROJ_DIM = 512
PRED_HIDDEN = 128


class SslEncoder(nn.Module):
    """Image (N, 3, S, S) in [-1, 1] -> (N, 128) embedding (not normalised)."""

    def __init__(
        self, pretrained: bool = True, embed_dim: int = EMBED_DIM, models_dir: Path | None = None
    ) -> None:
        super().__init__()
        if pretrained:  # the registry's ImageNet weights, from ``models_dir`` (default: the home's)
            self.trunk = torch_network(models_dir)
        else:  # the architecture only: a checkpoint is about to overwrite every weight
            from efficientnet_lite_pytorch import EfficientNet

            self.trunk = EfficientNet.from_name(MODEL_NAME)
        # The ImageNet classifier is not used; dropping it keeps the checkpoint small.
        self.trunk._fc = nn.Identity()
        self.embed = nn.Sequential(nn.Linear(FEATURE_DIM, embed_dim), nn.BatchNorm1d(embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.trunk.extract_features(x).mean(dim=(2, 3)))


class NormalisedEncoder(nn.Module):
    """What the IR holds: the encoder followed by L2 normalisation."""

    def __init__(self, encoder: SslEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder(x), dim=1)


def _mlp(dims: list[int], last_bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b, bias=last and not last_bn))
        if not last or last_bn:
            layers.append(nn.BatchNorm1d(b))
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SimSiamModel(nn.Module):
    """Encoder + SimSiam projector (z) and predictor (p) + auxiliary heads on the embedding."""

    def __init__(
        self,
        pretrained: bool = True,
        embed_dim: int = EMBED_DIM,
        proj_dim: int = PROJ_DIM,
        models_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.encoder = SslEncoder(pretrained=pretrained, embed_dim=embed_dim, models_dir=models_dir)
        self.projector = _mlp([embed_dim, proj_dim, proj_dim], last_bn=True)
        self.predictor = _mlp([proj_dim, PRED_HIDDEN, proj_dim], last_bn=False)
        self.placement_head = nn.Linear(embed_dim, len(PLACEMENTS))
        self.layers_head = nn.Linear(embed_dim, len(LAYER_BUCKETS))
        self.text_head = nn.Linear(embed_dim, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.encoder(x)
        z = self.projector(e)
        return {
            "embedding": e,
            "z": z,
            "p": self.predictor(z),
            "placement": self.placement_head(e),
            "layers": self.layers_head(e),
            "has_text": self.text_head(e).squeeze(1),
        }


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, stopgrad(z)) per pair: -cos, in [-1, 1]."""
    return -F.cosine_similarity(p, z.detach(), dim=1)


def simsiam_loss(
    out1: dict[str, torch.Tensor], out2: dict[str, torch.Tensor], weight: torch.Tensor
) -> torch.Tensor:
    """Symmetric SimSiam loss, a weighted mean over pairs (weights: the pair kind's)."""
    per_pair = 0.5 * (negative_cosine(out1["p"], out2["z"]) + negative_cosine(out2["p"], out1["z"]))
    return (per_pair * weight).sum() / weight.sum().clamp_min(1e-6)


def aux_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Placement + layer-count cross-entropy + has-text BCE, on the views whose ``aux_mask`` is 1."""
    mask = batch["aux_mask"]
    if float(mask.sum()) == 0:
        return out["embedding"].sum() * 0.0
    placement = F.cross_entropy(out["placement"], batch["placement"], reduction="none")
    layers = F.cross_entropy(out["layers"], batch["layers"], reduction="none")
    text = F.binary_cross_entropy_with_logits(out["has_text"], batch["has_text"], reduction="none")
    return ((placement + layers + text) * mask).sum() / mask.sum()


def output_std(z: torch.Tensor) -> float:
    """Mean per-dimension std of the L2-normalised outputs: ~1/sqrt(d) when healthy, 0 when
    every input maps to the same vector (SimSiam's collapse)."""
    return float(F.normalize(z.detach(), dim=1).std(dim=0).mean())
