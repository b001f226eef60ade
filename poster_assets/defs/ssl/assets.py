"""The project's own encoder (``poster_assets.ssl``), trained over the whole corpus.

Unpartitioned and in no batch or corpus job: training takes minutes, so it runs on request
(``ssl_job``, ``poster-assets train-encoder``). ``poster_encoder`` trains and exports; the
blocking check ``encoder_not_collapsed`` then judges the export, and only when it passed does
``models/ssl_encoder`` run and make the encoder current (``<models>/ssl/current.json``), after
which ``foreground_embeddings`` adds the ``ssl`` kind.
"""

# No `from __future__ import annotations`: Dagster reads SslConfig from the real annotations.
import dataclasses
import math
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np

from poster_assets.defs.metadata import image_markdown
from poster_assets.defs.resources import ModelsResource, PosterStore
from poster_assets.models.ssl_encoder import SslEmbedder, encoder_version, promote, ssl_dir
from poster_assets.ssl.config import TrainConfig
from poster_assets.storage.files import file_sha256

SSL_LABELS_KEY = dg.AssetKey(["marts", "ssl_labels"])
CURRENT_ENCODER_KEY = dg.AssetKey(["models", "ssl_encoder"])
HEALTH_CHECK = "encoder_not_collapsed"
# Posters the health check embeds to measure the spread of the exported encoder's outputs.
_PROBE_POSTERS = 32
_MIN_POSTERS = 2
_LOG_EVERY = 50
_DEFAULTS = TrainConfig()


class SslConfig(dg.Config):
    """The training settings a person may change in the launchpad; defaults are TrainConfig's,
    the one place they are set (offline evaluation uses the same)."""

    steps: int = _DEFAULTS.steps
    batch_size: int = _DEFAULTS.batch_size
    image_size: int = _DEFAULTS.image_size
    seed: int = _DEFAULTS.seed
    lr: float = _DEFAULTS.lr
    aux_weight: float = _DEFAULTS.aux_weight
    device: str = _DEFAULTS.device  # "auto": cuda when present, else cpu

    def train_config(self) -> TrainConfig:
        # "warn": a collapsed run still materializes (with its curves); its check then fails.
        return dataclasses.replace(_DEFAULTS, **self.model_dump(), on_collapse="warn")


def _last(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return round(finite[-1], 5) if finite else None


@dg.asset(
    group_name="ssl",
    deps=[SSL_LABELS_KEY, dg.AssetKey("layer_masks"), dg.AssetKey("foreground_masks")],
    kinds={"pytorch", "openvino"},
    code_version="ssl-encoder-v1",
)
def poster_encoder(
    context: dg.AssetExecutionContext,
    config: SslConfig,
    store: PosterStore,
    models: ModelsResource,
) -> dg.MaterializeResult:
    """A SimSiam encoder with auxiliary structure labels (title placement, layer count, text),
    trained on every poster of `marts.ssl_labels` and exported to OpenVINO IR under
    `<models>/ssl/`. Not yet in use: `models/ssl_encoder` promotes it once its check passed."""
    # Imported here: torch is heavy, and only training needs it.
    from poster_assets.ssl.export import export_openvino
    from poster_assets.ssl.labels import load_training_items
    from poster_assets.ssl.train import CHECKPOINT_NAME, plot_losses, train_encoder

    items = load_training_items(store)
    if len(items) < _MIN_POSTERS:
        raise dg.Failure(
            f"{len(items)} poster(s) have complete labels; training needs at least {_MIN_POSTERS}: "
            "materialize the extractors and the dbt models (corpus_job) for some batches first"
        )
    cfg = config.train_config()
    out = ssl_dir(models.path)
    out.mkdir(parents=True, exist_ok=True)
    context.log.info(f"training on {len(items)} posters from marts.ssl_labels, {cfg.resolved_device()}")
    t0 = time.perf_counter()

    def progress(step: int, losses: dict[str, float]) -> None:
        if (step + 1) % _LOG_EVERY == 0:
            context.log.info(
                f"step {step + 1}/{cfg.steps}: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
            )

    run_dir = Path(tempfile.mkdtemp(prefix=".run-", dir=out))
    try:
        result = train_encoder(items, cfg, run_dir, progress=progress, models_dir=models.path)
        ir_path = export_openvino(result.checkpoint_path, out)
        # One folder per encoder (named by the checkpoint's hash): the IR and its checkpoint.
        checkpoint = ir_path.parent / CHECKPOINT_NAME
        shutil.move(result.checkpoint_path, checkpoint)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    version = encoder_version(file_sha256(checkpoint))
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "data_version": result.data_version,
            "posters": len(items),
            "device": cfg.resolved_device(),
            "steps": len(result.total_loss),
            "final_simsiam_loss": _last(result.simsiam_loss),
            "final_aux_loss": _last(result.aux_loss),
            "final_total_loss": _last(result.total_loss),
            "output_std": _last(result.output_std),
            "embedding_std": _last(result.embedding_std),
            "healthy_std": round(result.healthy_std, 5),
            "collapsed": result.collapsed,
            "diverged": not all(math.isfinite(v) for v in result.total_loss),
            "seconds": round(time.perf_counter() - t0, 1),
            "train_seconds": round(result.seconds, 1),
            "ir_path": dg.MetadataValue.path(str(ir_path)),
            "checkpoint": dg.MetadataValue.path(str(checkpoint)),
            "loss_curves": image_markdown(plot_losses(result), "loss curves"),
        },
        data_version=dg.DataVersion(version),
    )


def _latest(instance: dg.DagsterInstance) -> dict:
    event = instance.get_latest_materialization_event(poster_encoder.key)
    return dict(event.asset_materialization.metadata) if event and event.asset_materialization else {}


@dg.asset_check(asset=poster_encoder, name=HEALTH_CHECK, blocking=True)
def encoder_health_check(context: dg.AssetCheckExecutionContext, store: PosterStore) -> dg.AssetCheckResult:
    """The encoder just exported trained without collapse or divergence, has finite weights,
    and its IR gives finite, spread-out vectors for up to 32 posters: mean per-dimension std at
    least `collapse_ratio` (0.1) of the healthy 1/sqrt(128). Blocking: a failed check stops
    the run before `models/ssl_encoder` promotes the encoder."""
    import torch

    from poster_assets.ssl.labels import load_training_items
    from poster_assets.ssl.train import load_checkpoint

    meta = _latest(context.instance)
    if "ir_path" not in meta:
        return dg.AssetCheckResult(passed=False, metadata={"problem": "no materialization with an ir_path"})
    ir_path, checkpoint = Path(meta["ir_path"].value), Path(meta["checkpoint"].value)
    model, _, _ = load_checkpoint(checkpoint)
    bad_tensors = [
        name
        for name, t in model.state_dict().items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    items = load_training_items(store)
    probe = [items[i] for i in np.linspace(0, len(items) - 1, min(_PROBE_POSTERS, len(items))).astype(int)]
    vectors = SslEmbedder(ir_path).embed([it.load_rgb() for it in probe])
    finite = bool(np.isfinite(vectors).all())
    spread = float(vectors.std(axis=0).mean()) if finite else 0.0
    threshold = _DEFAULTS.collapse_ratio / math.sqrt(vectors.shape[1])
    collapsed = bool(meta["collapsed"].value) if "collapsed" in meta else False
    diverged = bool(meta["diverged"].value) if "diverged" in meta else False
    return dg.AssetCheckResult(
        passed=not bad_tensors and finite and spread >= threshold and not collapsed and not diverged,
        metadata={
            "non_finite_tensors": len(bad_tensors),
            "finite_vectors": finite,
            "probe_posters": len(probe),
            "embedding_std": round(spread, 5),
            "threshold": round(threshold, 5),
            "collapsed_in_training": collapsed,
            "diverged_in_training": diverged,
            "ir_path": dg.MetadataValue.path(str(ir_path)),
        },
    )


@dg.asset(
    key=CURRENT_ENCODER_KEY,
    group_name="ssl",
    deps=[poster_encoder],
    kinds={"openvino"},
    code_version="promote-v1",
)
def ssl_encoder(context: dg.AssetExecutionContext, models: ModelsResource) -> dg.MaterializeResult:
    """The encoder in use: the last `poster_encoder` whose `encoder_not_collapsed` check passed
    (a failed blocking check stops the run before this step), named in
    `<models>/ssl/current.json`. Its data version is the encoder's version, so a promotion
    marks the `ssl` embeddings stale."""
    meta = _latest(context.instance)
    version = str(meta["version"].value)
    pointer = promote(
        models.path,
        Path(meta["ir_path"].value),
        version,
        str(meta["data_version"].value),
        Path(meta["checkpoint"].value),
    )
    context.log.info(f"{version} is now the current encoder")
    return dg.MaterializeResult(
        metadata={"version": version, "pointer": dg.MetadataValue.path(str(pointer))},
        data_version=dg.DataVersion(version),
    )
