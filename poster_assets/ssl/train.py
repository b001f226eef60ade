"""Train the SSL encoder: SimSiam on structure-defined pairs + auxiliary structure labels.

Reproducible: the seed fixes the weights of the heads, each step's batch (a generator seeded
by ``(seed, step)``) and every augmentation. Curriculum: posters sorted by ``difficulty``; the
first stage samples the easiest third, each later stage widens the pool until it is all.
Collapse guard: the mean per-dimension std of the L2-normalised projector outputs is
~1/sqrt(d) for a healthy SimSiam and falls to 0 when every input maps to one vector.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from poster_assets.ssl.config import TrainConfig
from poster_assets.ssl.dataset import PairDataset, collate
from poster_assets.ssl.labels import TrainItem, data_version
from poster_assets.ssl.model import PROJ_DIM, SimSiamModel, aux_loss, output_std, simsiam_loss
from poster_assets.storage.files import atomic_write

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "ssl_encoder.pt"
CHECKPOINT_FORMAT = 1


class CollapseError(RuntimeError):
    """The SimSiam outputs collapsed to (nearly) one vector."""


@dataclass
class TrainResult:
    checkpoint_path: Path
    config: TrainConfig
    data_version: str
    simsiam_loss: list[float] = field(default_factory=list)
    aux_loss: list[float] = field(default_factory=list)
    total_loss: list[float] = field(default_factory=list)
    output_std: list[float] = field(default_factory=list)  # projector z, 512-d
    embedding_std: list[float] = field(default_factory=list)  # the exported 128-d embedding
    pool_size: list[int] = field(default_factory=list)  # posters the curriculum sampled from
    seconds: float = 0.0
    collapsed: bool = False

    @property
    def healthy_std(self) -> float:
        return 1.0 / math.sqrt(PROJ_DIM)


def curriculum_pool(n: int, step: int, steps: int, stages: int, enabled: bool) -> int:
    """How many of the easiest posters step ``step`` samples from: the easiest 1/stages at
    first, widening by one stage's share until the last stage uses all ``n``."""
    if not enabled or stages <= 1:
        return n
    stage = min(stages - 1, step * stages // max(1, steps))
    return max(1, math.ceil(n * (stage + 1) / stages))


def _batch_indices(pool: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(pool, size=batch_size, replace=pool < batch_size)


def train_encoder(
    items: Sequence[TrainItem],
    config: TrainConfig,
    out_dir: Path,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    models_dir: Path | None = None,
) -> TrainResult:
    """Train, save ``out_dir/ssl_encoder.pt`` atomically, return the per-step record. The trunk
    starts from the registry's EfficientNet-Lite0 weights in ``models_dir`` (default: the home's)."""
    if len(items) < 2:
        raise ValueError("SSL training needs at least two posters")
    ordered = sorted(items, key=lambda i: (i.difficulty, i.poster_id))  # easy -> hard
    device = torch.device(config.resolved_device())
    torch.manual_seed(config.seed)
    model = SimSiamModel(pretrained=True, models_dir=models_dir).to(device)
    dataset = PairDataset(ordered, size=config.image_size, seed=config.seed)
    # SimSiam keeps the predictor at a fixed learning rate; the rest follows a cosine decay.
    predictor = list(model.predictor.parameters())
    trunk = list(model.encoder.trunk.parameters())
    ids = {id(p) for p in predictor + trunk}
    heads = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.SGD(
        [
            {"params": trunk, "fix_lr": False, "scale": config.trunk_lr_scale},
            {"params": heads, "fix_lr": False, "scale": 1.0},
            {"params": predictor, "fix_lr": True, "scale": 1.0},
        ],
        lr=config.lr,
        momentum=0.9,
        weight_decay=config.weight_decay,
    )
    result = TrainResult(
        checkpoint_path=Path(out_dir) / CHECKPOINT_NAME, config=config, data_version=data_version(ordered)
    )
    threshold = config.collapse_ratio * result.healthy_std
    low_streak = 0
    t0 = time.perf_counter()
    model.train()
    for step in range(config.steps):
        lr = config.lr * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        for group in opt.param_groups:
            group["lr"] = group["scale"] * (config.lr if group["fix_lr"] else lr)
        pool = curriculum_pool(len(ordered), step, config.steps, config.stages, config.curriculum)
        rng = np.random.default_rng([config.seed, step])
        batch = collate([dataset.pair(int(i), rng) for i in _batch_indices(pool, config.batch_size, rng)])
        batch = {k: v.to(device) for k, v in batch.items()}
        out1, out2 = model(batch["view1"]), model(batch["view2"])
        l_ssl = simsiam_loss(out1, out2, batch["weight"])
        l_aux = 0.5 * (aux_loss(out1, batch) + aux_loss(out2, batch))
        total = l_ssl + config.aux_weight * l_aux
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

        std = 0.5 * (output_std(out1["z"]) + output_std(out2["z"]))
        result.simsiam_loss.append(l_ssl.item())
        # NaN, not 0, when no pair in the batch had whole-poster views (nothing was asked).
        result.aux_loss.append(l_aux.item() if float(batch["aux_mask"].sum()) else math.nan)
        result.total_loss.append(total.item())
        result.output_std.append(std)
        result.embedding_std.append(output_std(out1["embedding"]))
        result.pool_size.append(pool)
        if progress:
            progress(step, {"simsiam": l_ssl.item(), "aux": l_aux.item(), "std": std})
        low_streak = low_streak + 1 if std < threshold else 0
        if low_streak >= config.collapse_patience:
            result.collapsed = True
            message = (
                f"SimSiam collapsed at step {step}: output std {std:.4f} < {threshold:.4f} "
                f"for {low_streak} steps (healthy ~{result.healthy_std:.4f})"
            )
            if config.on_collapse == "raise":
                raise CollapseError(message)
            warnings.warn(message, stacklevel=2)
            break
    result.seconds = time.perf_counter() - t0
    save_checkpoint(model, result, [i.poster_id for i in ordered])
    return result


def save_checkpoint(model: SimSiamModel, result: TrainResult, poster_ids: list[str]) -> Path:
    """Write the checkpoint under a temporary name and rename it into place."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": dataclasses.asdict(result.config),
        "data_version": result.data_version,
        "poster_ids": poster_ids,
        "final": {
            "simsiam_loss": result.simsiam_loss[-1:],
            "output_std": result.output_std[-1:],
            "steps_done": len(result.total_loss),
            "collapsed": result.collapsed,
        },
    }
    return atomic_write(result.checkpoint_path, lambda fh: torch.save(payload, fh))


def load_checkpoint(path: Path) -> tuple[SimSiamModel, TrainConfig, dict[str, Any]]:
    """(model in eval mode on the cpu, its config, the rest of the checkpoint)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {payload.get('format')!r}")
    model = SimSiamModel(pretrained=False)
    model.load_state_dict(payload["state_dict"])
    return model.eval(), TrainConfig(**payload["config"]), payload


def plot_losses(result: TrainResult) -> Image.Image:
    """Loss curves and the collapse monitor, as a PNG-able image for the UI."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    steps = np.arange(len(result.total_loss))
    ax1.plot(steps, result.simsiam_loss, label="SimSiam (-cos)")
    ax1.plot(steps, result.aux_loss, label="aux (CE + BCE)", alpha=0.7)
    ax1.plot(steps, result.total_loss, label="total", alpha=0.7)
    changes = [s for s in range(1, len(result.pool_size)) if result.pool_size[s] != result.pool_size[s - 1]]
    for s in changes:
        ax1.axvline(s, color="grey", ls=":", lw=1)
    ax1.set_xlabel("step")
    ax1.set_title("losses (dotted: curriculum stage)")
    ax1.legend(fontsize=7)
    ax2.plot(steps, result.output_std, label="projector z (512-d)")
    ax2.plot(steps, result.embedding_std, label="embedding (128-d)")
    ax2.axhline(result.healthy_std, color="C0", ls="--", lw=1, label="1/sqrt(512)")
    ax2.axhline(1 / math.sqrt(128), color="C1", ls="--", lw=1, label="1/sqrt(128)")
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("step")
    ax2.set_title("std of L2-normalised outputs (0 = collapse)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image.open(buf).convert("RGB")
